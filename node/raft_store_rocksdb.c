/*
 * raft_store_rocksdb.c - the Raft log, Raft state and state machine data in
 * one RocksDB database (see raft_store.h for the layout).
 *
 * Why one database with column families: one WriteBatch can then change the
 * log, the hard state and (for snapshots) the state machine atomically, and
 * one synced WAL write makes all of it durable. Every value written here
 * carries a CRC-32C that load verifies, because RocksDB's own block checksums
 * do not catch a bug that writes the wrong bytes, nor damage to the WAL tail
 * it tolerates in its default recovery mode.
 *
 * Invariants of what is stored (checked by raft_store_load):
 *   1. log entries are exactly (snap.index, last], consecutive;
 *   2. terms never decrease along the log, and the first term >= snap.term;
 *   3. hard.commit <= last (snap.index when the log is empty);
 *   4. every value's checksum verifies.
 */
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "raft_store.h"

#define KEY_HARD "hard"
#define KEY_SNAP_META "snap_meta"
#define KEY_SNAP_DATA "snap_data"
#define KEY_APPLIED "applied"
#define SNAP_META_MAX_BYTES 1024
#define RAFT_STORE_MAX_POINT_DELETES 4096 /* longer conflicting suffixes: one range delete */

static const char *const cf_names[RAFT_STORE_CF_COUNT] = {
    "default", "raft_log", "raft_state", "kv", "registry", "ledger", "blobs", "local",
};

struct raft_store {
    rocksdb_t *db;
    rocksdb_options_t *opts;
    rocksdb_column_family_handle_t *cf[RAFT_STORE_CF_COUNT];
    rocksdb_writeoptions_t *wo_sync;
    rocksdb_writeoptions_t *wo_nosync;
    rocksdb_readoptions_t *ro;
    uint64_t syncs;
    uint64_t unsynced;
    struct raft_hard_state last_hs; /* last hard state written or loaded */
    bool have_hs;
    uint64_t last_index; /* last stored entry (or snapshot) index, when have_last */
    bool have_last;
};

/* ---- CRC-32C ------------------------------------------------------------ */

static uint32_t crc_table[256];
static bool crc_ready;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
    crc_ready = true;
}

uint32_t raft_store_crc32c(uint32_t crc, const void *buf, size_t len)
{
    if (!crc_ready)
        crc_init();
    const uint8_t *p = buf;
    crc = ~crc;
    for (size_t i = 0; i < len; i++)
        crc = crc_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

/* ---- byte helpers -------------------------------------------------------- */

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void log_key(uint8_t key[8], uint64_t index)
{
    for (int i = 0; i < 8; i++)
        key[i] = (uint8_t)(index >> (56 - 8 * i));
}

static uint64_t log_key_index(const uint8_t key[8])
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | key[i];
    return v;
}

static void put_sealed(rocksdb_writebatch_t *wb, rocksdb_column_family_handle_t *cf,
                       const char *key, const uint8_t *body, size_t len)
{
    uint8_t buf[SNAP_META_MAX_BYTES + 4];
    NX_ASSERT(len <= SNAP_META_MAX_BYTES);
    put_u32(buf, raft_store_crc32c(0, body, len));
    memcpy(buf + 4, body, len);
    rocksdb_writebatch_put_cf(wb, cf, key, strlen(key), (const char *)buf, 4 + len);
}

/* ---- open / close -------------------------------------------------------- */

struct rocksdb_t *raft_store_db(struct raft_store *s)
{
    return s->db;
}

struct rocksdb_column_family_handle_t *raft_store_cf(struct raft_store *s, enum raft_store_cf cf)
{
    NX_ASSERT(cf < RAFT_STORE_CF_COUNT);
    return s->cf[cf];
}

uint64_t raft_store_syncs(const struct raft_store *s)
{
    return s->syncs;
}

int raft_store_open(struct raft_store **out, const char *data_dir, char *err, size_t cap)
{
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/%s", data_dir, RAFT_STORE_DIR);
    if (n < 0 || (size_t)n >= sizeof path) {
        snprintf(err, cap, "storage: data directory path too long");
        return NX_ERR_INVAL;
    }
    struct raft_store *s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(err, cap, "storage: out of memory");
        return NX_ERR_NOMEM;
    }
    s->opts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(s->opts, 1);
    rocksdb_options_set_create_missing_column_families(s->opts, 1);
    rocksdb_options_set_paranoid_checks(s->opts, 1);
    /* A damaged WAL is an error, not a silently shortened history. */
    rocksdb_options_set_wal_recovery_mode(s->opts, rocksdb_absolute_consistency_recovery);
    rocksdb_options_set_info_log_level(s->opts, 4); /* header-level: keep LOG small */
    rocksdb_options_set_keep_log_file_num(s->opts, 2);
    const rocksdb_options_t *cf_opts[RAFT_STORE_CF_COUNT];
    for (int i = 0; i < RAFT_STORE_CF_COUNT; i++)
        cf_opts[i] = s->opts;
    char *rerr = NULL;
    s->db = rocksdb_open_column_families(s->opts, path, RAFT_STORE_CF_COUNT, cf_names, cf_opts,
                                         s->cf, &rerr);
    if (s->db == NULL) {
        snprintf(err, cap, "storage: cannot open %s: %s", path, rerr ? rerr : "unknown error");
        int rc = rerr && strstr(rerr, "Corruption") ? NX_ERR_CORRUPT : NX_ERR_IO;
        rocksdb_free(rerr);
        rocksdb_options_destroy(s->opts);
        free(s);
        return rc;
    }
    s->wo_sync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(s->wo_sync, 1);
    s->wo_nosync = rocksdb_writeoptions_create();
    s->ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_verify_checksums(s->ro, 1);
    *out = s;
    return NX_OK;
}

void raft_store_close(struct raft_store *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < RAFT_STORE_CF_COUNT; i++)
        if (s->cf[i])
            rocksdb_column_family_handle_destroy(s->cf[i]);
    rocksdb_close(s->db);
    rocksdb_writeoptions_destroy(s->wo_sync);
    rocksdb_writeoptions_destroy(s->wo_nosync);
    rocksdb_readoptions_destroy(s->ro);
    rocksdb_options_destroy(s->opts);
    free(s);
}

int raft_store_write(struct raft_store *s, struct rocksdb_writebatch_t *wb, bool sync)
{
    char *rerr = NULL;
    rocksdb_write(s->db, sync ? s->wo_sync : s->wo_nosync, wb, &rerr);
    if (rerr) {
        NX_ERROR("storage_write_failed", "error=\"%s\"", rerr);
        rocksdb_free(rerr);
        return NX_ERR_IO;
    }
    if (sync)
        s->syncs++;
    return NX_OK;
}

/* ---- writes ------------------------------------------------------------- */

static void batch_hard_state(struct raft_store *s, rocksdb_writebatch_t *wb,
                             const struct raft_hard_state *hs)
{
    uint8_t b[24];
    put_u64(b, hs->term);
    put_u64(b + 8, hs->vote);
    put_u64(b + 16, hs->commit);
    put_sealed(wb, s->cf[RAFT_STORE_CF_STATE], KEY_HARD, b, sizeof b);
}

static int batch_snapshot(struct raft_store *s, rocksdb_writebatch_t *wb, uint64_t index,
                          uint64_t term, const struct raft_conf *conf, const void *data, size_t len)
{
    uint8_t meta[SNAP_META_MAX_BYTES];
    put_u64(meta, index);
    put_u64(meta + 8, term);
    put_u32(meta + 16, (uint32_t)len);
    put_u32(meta + 20, raft_store_crc32c(0, data, len));
    long cl = raft_conf_encode(conf, meta + 28, sizeof meta - 28);
    if (cl < 0)
        return (int)cl;
    put_u32(meta + 24, (uint32_t)cl);
    put_sealed(wb, s->cf[RAFT_STORE_CF_STATE], KEY_SNAP_META, meta, 28 + (size_t)cl);
    rocksdb_writebatch_put_cf(wb, s->cf[RAFT_STORE_CF_STATE], KEY_SNAP_DATA, strlen(KEY_SNAP_DATA),
                              len ? data : "", len);
    return NX_OK;
}

static void batch_delete_log(struct raft_store *s, rocksdb_writebatch_t *wb, uint64_t from,
                             uint64_t to_excl)
{
    uint8_t a[8], b[8];
    log_key(a, from);
    log_key(b, to_excl);
    rocksdb_writebatch_delete_range_cf(wb, s->cf[RAFT_STORE_CF_LOG], (const char *)a, 8,
                                       (const char *)b, 8);
}

/*
 * Removes stored entries that new entries [first, new_last] do not overwrite:
 * (new_last, last]. Appends past the end (the common case) delete nothing.
 * Point deletes, not a range delete per write: thousands of range tombstones
 * make RocksDB iteration and WAL recovery very slow. Without a known last
 * index (a store not loaded yet) it falls back to one range delete.
 */
static void batch_truncate_suffix(struct raft_store *s, rocksdb_writebatch_t *wb, uint64_t first,
                                  uint64_t new_last)
{
    if (!s->have_last) {
        batch_delete_log(s, wb, first, UINT64_MAX);
        return;
    }
    if (s->last_index <= new_last)
        return;
    if (s->last_index - new_last > RAFT_STORE_MAX_POINT_DELETES) {
        batch_delete_log(s, wb, new_last + 1, UINT64_MAX);
        return;
    }
    for (uint64_t i = new_last + 1; i <= s->last_index; i++) {
        uint8_t key[8];
        log_key(key, i);
        rocksdb_writebatch_delete_cf(wb, s->cf[RAFT_STORE_CF_LOG], (const char *)key, 8);
    }
}

static int batch_entry(struct raft_store *s, rocksdb_writebatch_t *wb, const struct raft_entry *e)
{
    uint8_t key[8];
    log_key(key, e->index);
    size_t vlen = RAFT_STORE_ENTRY_HEADER_BYTES + e->len;
    uint8_t stack[512];
    uint8_t *v = vlen <= sizeof stack ? stack : malloc(vlen);
    if (v == NULL)
        return NX_ERR_NOMEM;
    put_u64(v + 4, e->term);
    v[12] = e->type;
    put_u32(v + 13, e->len);
    if (e->len)
        memcpy(v + RAFT_STORE_ENTRY_HEADER_BYTES, e->data, e->len);
    uint32_t crc = raft_store_crc32c(0, key, 8);
    put_u32(v, raft_store_crc32c(crc, v + 4, vlen - 4));
    rocksdb_writebatch_put_cf(wb, s->cf[RAFT_STORE_CF_LOG], (const char *)key, 8, (const char *)v,
                              vlen);
    if (v != stack)
        free(v);
    return NX_OK;
}

int raft_store_persist(struct raft_store *s, const struct raft_ready *rd)
{
    if (!rd->snapshot && rd->n_entries == 0 && !rd->has_hard_state)
        return NX_OK;
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    int rc = NX_OK;
    if (rd->snapshot) {
        const struct raft_snapshot *sn = rd->snapshot;
        rc = batch_snapshot(s, wb, sn->index, sn->term, &sn->conf, sn->data, sn->len);
        if (rc != NX_OK)
            goto out;
        batch_delete_log(s, wb, 0, UINT64_MAX);
    }
    if (rd->n_entries > 0) {
        uint64_t first = rd->entries[0].index, new_last = rd->entries[rd->n_entries - 1].index;
        batch_truncate_suffix(s, wb, first, new_last);
        for (size_t i = 0; i < rd->n_entries && rc == NX_OK; i++)
            rc = batch_entry(s, wb, &rd->entries[i]);
        if (rc != NX_OK)
            goto out;
    }
    /*
     * Only the term, the vote, entries and snapshots must be durable before
     * messages leave. A change of commit alone may be lost in a crash (commit
     * is learned again from the leader), so it rides unsynced: RocksDB
     * recovers a prefix of its WAL, so a later synced write makes it durable
     * and the applied index (written after it) never passes it.
     */
    bool sync = rd->snapshot || rd->n_entries > 0 || !s->have_hs;
    if (rd->has_hard_state) {
        batch_hard_state(s, wb, &rd->hard_state);
        if (s->have_hs &&
            (rd->hard_state.term != s->last_hs.term || rd->hard_state.vote != s->last_hs.vote))
            sync = true;
    }
    rc = raft_store_write(s, wb, sync);
    if (rc == NX_OK && s->have_last) {
        if (rd->snapshot)
            s->last_index = rd->snapshot->index;
        if (rd->n_entries > 0)
            s->last_index = rd->entries[rd->n_entries - 1].index;
    }
    if (rc == NX_OK && rd->has_hard_state) {
        s->last_hs = rd->hard_state;
        s->have_hs = true;
    }
    if (rc == NX_OK && !sync)
        s->unsynced++;
out:
    rocksdb_writebatch_destroy(wb);
    return rc;
}

int raft_store_bootstrap(struct raft_store *s, const struct raft_conf *conf)
{
    size_t len = 0;
    char *rerr = NULL;
    char *v = rocksdb_get_cf(s->db, s->ro, s->cf[RAFT_STORE_CF_STATE], KEY_SNAP_META,
                             strlen(KEY_SNAP_META), &len, &rerr);
    if (rerr) {
        rocksdb_free(rerr);
        return NX_ERR_IO;
    }
    if (v) {
        rocksdb_free(v);
        return NX_ERR_EXISTS;
    }
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    int rc = batch_snapshot(s, wb, 0, 0, conf, NULL, 0);
    if (rc == NX_OK) {
        struct raft_hard_state hs = {0, 0, 0};
        batch_hard_state(s, wb, &hs);
        rc = raft_store_write(s, wb, true);
        if (rc == NX_OK) {
            s->last_hs = hs;
            s->have_hs = true;
            s->last_index = 0;
            s->have_last = true;
        }
    }
    rocksdb_writebatch_destroy(wb);
    return rc;
}

int raft_store_compact(struct raft_store *s, uint64_t index, uint64_t term,
                       const struct raft_conf *conf, const void *data, size_t len)
{
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    int rc = batch_snapshot(s, wb, index, term, conf, data, len);
    if (rc == NX_OK) {
        batch_delete_log(s, wb, 0, index + 1);
        rc = raft_store_write(s, wb, true);
        if (rc == NX_OK && s->have_last && index > s->last_index)
            s->last_index = index;
    }
    rocksdb_writebatch_destroy(wb);
    return rc;
}

void raft_store_batch_applied(struct raft_store *s, struct rocksdb_writebatch_t *wb, uint64_t index)
{
    uint8_t b[8];
    put_u64(b, index);
    put_sealed(wb, s->cf[RAFT_STORE_CF_STATE], KEY_APPLIED, b, sizeof b);
}

/* ---- load ----------------------------------------------------------------- */

/* Reads a sealed value of raft_state; *body is malloc'd. NX_ERR_NOT_FOUND if absent. */
static int get_sealed(struct raft_store *s, const char *key, uint8_t **body, size_t *len, char *err,
                      size_t cap)
{
    size_t vlen = 0;
    char *rerr = NULL;
    char *v =
        rocksdb_get_cf(s->db, s->ro, s->cf[RAFT_STORE_CF_STATE], key, strlen(key), &vlen, &rerr);
    if (rerr) {
        snprintf(err, cap, "storage: reading %s: %s", key, rerr);
        rocksdb_free(rerr);
        return NX_ERR_IO;
    }
    if (v == NULL)
        return NX_ERR_NOT_FOUND;
    if (vlen < 4 || raft_store_crc32c(0, v + 4, vlen - 4) != get_u32((uint8_t *)v)) {
        snprintf(err, cap, "storage corrupt: raft_state/%s fails its checksum", key);
        rocksdb_free(v);
        return NX_ERR_CORRUPT;
    }
    *body = malloc(vlen - 4 + 1);
    if (*body == NULL) {
        rocksdb_free(v);
        return NX_ERR_NOMEM;
    }
    memcpy(*body, v + 4, vlen - 4);
    *len = vlen - 4;
    rocksdb_free(v);
    return NX_OK;
}

static int load_snapshot(struct raft_store *s, struct raft_store_boot *b, char *err, size_t cap)
{
    uint8_t *meta = NULL;
    size_t len = 0;
    int rc = get_sealed(s, KEY_SNAP_META, &meta, &len, err, cap);
    if (rc != NX_OK)
        return rc;
    struct raft_snapshot *sn = &b->boot.snapshot;
    uint32_t cl = len >= 28 ? get_u32(meta + 24) : 0;
    if (len < 28 || 28 + (size_t)cl != len || raft_conf_decode(meta + 28, cl, &sn->conf) != NX_OK) {
        snprintf(err, cap, "storage corrupt: raft_state/snap_meta is malformed");
        free(meta);
        return NX_ERR_CORRUPT;
    }
    sn->index = get_u64(meta);
    sn->term = get_u64(meta + 8);
    uint32_t dlen = get_u32(meta + 16), dcrc = get_u32(meta + 20);
    free(meta);
    size_t vlen = 0;
    char *rerr = NULL;
    char *v = rocksdb_get_cf(s->db, s->ro, s->cf[RAFT_STORE_CF_STATE], KEY_SNAP_DATA,
                             strlen(KEY_SNAP_DATA), &vlen, &rerr);
    if (rerr) {
        snprintf(err, cap, "storage: reading snapshot data: %s", rerr);
        rocksdb_free(rerr);
        return NX_ERR_IO;
    }
    if (v == NULL || vlen != dlen || raft_store_crc32c(0, v, vlen) != dcrc) {
        snprintf(err, cap, "storage corrupt: snapshot data at index %llu fails its checksum",
                 (unsigned long long)sn->index);
        rocksdb_free(v);
        return NX_ERR_CORRUPT;
    }
    b->snap_data = malloc(vlen ? vlen : 1);
    if (b->snap_data == NULL) {
        rocksdb_free(v);
        return NX_ERR_NOMEM;
    }
    memcpy(b->snap_data, v, vlen);
    rocksdb_free(v);
    sn->data = b->snap_data;
    sn->len = dlen;
    return NX_OK;
}

/* Decodes and checks one log value into e (data malloc'd). */
static int decode_entry(const char *key, size_t klen, const char *val, size_t vlen,
                        struct raft_entry *e, char *err, size_t cap)
{
    if (klen != 8) {
        snprintf(err, cap, "storage corrupt: raft_log key of %zu bytes", klen);
        return NX_ERR_CORRUPT;
    }
    uint64_t index = log_key_index((const uint8_t *)key);
    const uint8_t *v = (const uint8_t *)val;
    if (vlen < RAFT_STORE_ENTRY_HEADER_BYTES ||
        get_u32(v + 13) != vlen - RAFT_STORE_ENTRY_HEADER_BYTES) {
        snprintf(err, cap, "storage corrupt: log entry %llu is truncated or malformed",
                 (unsigned long long)index);
        return NX_ERR_CORRUPT;
    }
    uint32_t crc = raft_store_crc32c(0, key, 8);
    if (raft_store_crc32c(crc, v + 4, vlen - 4) != get_u32(v)) {
        snprintf(err, cap, "storage corrupt: log entry %llu fails its checksum",
                 (unsigned long long)index);
        return NX_ERR_CORRUPT;
    }
    e->index = index;
    e->term = get_u64(v + 4);
    e->type = v[12];
    e->len = get_u32(v + 13);
    uint8_t *d = malloc(e->len ? e->len : 1);
    if (d == NULL)
        return NX_ERR_NOMEM;
    memcpy(d, v + RAFT_STORE_ENTRY_HEADER_BYTES, e->len);
    e->data = d;
    return NX_OK;
}

static int load_log(struct raft_store *s, struct raft_store_boot *b, char *err, size_t cap)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, s->ro, s->cf[RAFT_STORE_CF_LOG]);
    size_t n = 0, ncap = 0;
    int rc = NX_OK;
    const struct raft_snapshot *sn = &b->boot.snapshot;
    uint64_t prev_term = sn->term;
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        if (n == ncap) {
            size_t nc = ncap ? 2 * ncap : 64;
            struct raft_entry *g = realloc(b->entries, nc * sizeof *g);
            if (g == NULL) {
                rc = NX_ERR_NOMEM;
                goto out;
            }
            b->entries = g;
            ncap = nc;
        }
        size_t klen, vlen;
        const char *k = rocksdb_iter_key(it, &klen);
        const char *v = rocksdb_iter_value(it, &vlen);
        struct raft_entry *e = &b->entries[n];
        rc = decode_entry(k, klen, v, vlen, e, err, cap);
        if (rc != NX_OK)
            goto out;
        n++;
        b->boot.n_entries = n;
        uint64_t want = sn->index + n;
        if (e->index != want) {
            snprintf(err, cap,
                     "storage corrupt: log entry %llu found where %llu was expected "
                     "(missing or misplaced entries)",
                     (unsigned long long)e->index, (unsigned long long)want);
            rc = NX_ERR_CORRUPT;
            goto out;
        }
        if (e->term < prev_term) {
            snprintf(err, cap, "storage corrupt: log entry %llu has term %llu below %llu",
                     (unsigned long long)e->index, (unsigned long long)e->term,
                     (unsigned long long)prev_term);
            rc = NX_ERR_CORRUPT;
            goto out;
        }
        prev_term = e->term;
    }
    char *rerr = NULL;
    rocksdb_iter_get_error(it, &rerr);
    if (rerr) {
        snprintf(err, cap, "storage: reading the log: %s", rerr);
        rocksdb_free(rerr);
        rc = strstr(err, "Corruption") ? NX_ERR_CORRUPT : NX_ERR_IO;
    }
out:
    rocksdb_iter_destroy(it);
    b->boot.entries = b->entries;
    return rc;
}

int raft_store_load(struct raft_store *s, struct raft_store_boot *out, char *err, size_t cap)
{
    memset(out, 0, sizeof *out);
    int rc = load_snapshot(s, out, err, cap);
    if (rc == NX_ERR_NOT_FOUND) {
        /* No Raft state: a new node. The log must be empty too. */
        rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, s->ro, s->cf[RAFT_STORE_CF_LOG]);
        rocksdb_iter_seek_to_first(it);
        bool any = rocksdb_iter_valid(it);
        rocksdb_iter_destroy(it);
        if (any) {
            snprintf(err, cap, "storage corrupt: log entries without snapshot metadata");
            return NX_ERR_CORRUPT;
        }
        return NX_OK;
    }
    if (rc != NX_OK)
        goto fail;
    out->has_state = true;
    rc = load_log(s, out, err, cap);
    if (rc != NX_OK)
        goto fail;
    uint8_t *body = NULL;
    size_t len = 0;
    rc = get_sealed(s, KEY_HARD, &body, &len, err, cap);
    if (rc == NX_ERR_NOT_FOUND) {
        snprintf(err, cap, "storage corrupt: raft_state/hard is missing");
        rc = NX_ERR_CORRUPT;
    }
    if (rc != NX_OK)
        goto fail;
    if (len != 24) {
        free(body);
        snprintf(err, cap, "storage corrupt: raft_state/hard is malformed");
        rc = NX_ERR_CORRUPT;
        goto fail;
    }
    struct raft_hard_state *hs = &out->boot.hard_state;
    hs->term = get_u64(body);
    hs->vote = get_u64(body + 8);
    hs->commit = get_u64(body + 16);
    free(body);
    s->last_hs = *hs;
    s->have_hs = true;
    uint64_t last = out->boot.snapshot.index + out->boot.n_entries;
    s->last_index = last;
    s->have_last = true;
    if (hs->commit > last) {
        snprintf(err, cap,
                 "storage corrupt: commit index %llu is past the last stored entry %llu "
                 "(log truncated)",
                 (unsigned long long)hs->commit, (unsigned long long)last);
        rc = NX_ERR_CORRUPT;
        goto fail;
    }
    if (out->boot.n_entries > 0 && out->boot.entries[out->boot.n_entries - 1].term > hs->term) {
        snprintf(err, cap, "storage corrupt: log entry %llu has a term above the hard state's",
                 (unsigned long long)last);
        rc = NX_ERR_CORRUPT;
        goto fail;
    }
    rc = get_sealed(s, KEY_APPLIED, &body, &len, err, cap);
    if (rc == NX_OK) {
        uint64_t applied = len == 8 ? get_u64(body) : UINT64_MAX;
        free(body);
        if (applied > hs->commit) {
            snprintf(err, cap, "storage corrupt: applied index %llu is past commit %llu",
                     (unsigned long long)applied, (unsigned long long)hs->commit);
            rc = NX_ERR_CORRUPT;
            goto fail;
        }
        out->boot.applied = applied;
    } else if (rc != NX_ERR_NOT_FOUND) {
        goto fail;
    }
    rc = NX_OK;
    /* The configuration as of applied: the snapshot's, then conf entries up to applied. */
    out->applied_conf = out->boot.snapshot.conf;
    for (size_t i = 0; i < out->boot.n_entries; i++) {
        const struct raft_entry *e = &out->boot.entries[i];
        if (e->index > out->boot.applied)
            break;
        if (e->type == RAFT_ENTRY_CONF &&
            raft_conf_decode(e->data, e->len, &out->applied_conf) != NX_OK) {
            snprintf(err, cap, "storage corrupt: configuration entry %llu does not decode",
                     (unsigned long long)e->index);
            rc = NX_ERR_CORRUPT;
            goto fail;
        }
    }
    return NX_OK;
fail:
    raft_store_boot_free(out);
    return rc;
}

void raft_store_boot_free(struct raft_store_boot *b)
{
    for (size_t i = 0; i < b->boot.n_entries; i++)
        free((void *)b->entries[i].data);
    free(b->entries);
    free(b->snap_data);
    memset(b, 0, sizeof *b);
}
