/*
 * session_store_rocksdb.c - session contexts in a node-local RocksDB, one
 * key per session ("session/<id>"), written with sync so that a context the
 * agent returned survives a crash of the node right after the call. The
 * node may later hand a column family of its main database instead; the
 * interface (struct sbx_session_store) stays the same.
 */
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox/internal.h"

struct rdb_store {
    rocksdb_t *db;
    rocksdb_options_t *opts;
    rocksdb_readoptions_t *ropts;
    rocksdb_writeoptions_t *wopts;
};

static size_t make_key(char *key, size_t cap, const char *id)
{
    int n = snprintf(key, cap, "session/%s", id);
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

static int rdb_load(void *impl, const char *id, char **json)
{
    struct rdb_store *s = impl;
    char key[SBX_SESSION_ID_MAX + 16], *errptr = NULL;
    size_t klen = make_key(key, sizeof key, id), vlen = 0;
    if (!klen)
        return NX_ERR_TOO_BIG;
    char *v = rocksdb_get(s->db, s->ropts, key, klen, &vlen, &errptr);
    if (errptr) {
        NX_ERROR("sbx_session_load_failed", "err=\"%s\"", errptr);
        rocksdb_free(errptr);
        return NX_ERR_IO;
    }
    if (!v)
        return NX_ERR_NOT_FOUND;
    *json = malloc(vlen + 1);
    if (*json) {
        memcpy(*json, v, vlen);
        (*json)[vlen] = '\0';
    }
    rocksdb_free(v);
    return *json ? 0 : NX_ERR_NOMEM;
}

static int rdb_save(void *impl, const char *id, const char *json)
{
    struct rdb_store *s = impl;
    char key[SBX_SESSION_ID_MAX + 16], *errptr = NULL;
    size_t klen = make_key(key, sizeof key, id);
    if (!klen)
        return NX_ERR_TOO_BIG;
    rocksdb_put(s->db, s->wopts, key, klen, json, strlen(json), &errptr);
    if (errptr) {
        NX_ERROR("sbx_session_save_failed", "err=\"%s\"", errptr);
        rocksdb_free(errptr);
        return NX_ERR_IO;
    }
    return 0;
}

static int rdb_remove(void *impl, const char *id)
{
    struct rdb_store *s = impl;
    char key[SBX_SESSION_ID_MAX + 16], *errptr = NULL;
    size_t klen = make_key(key, sizeof key, id);
    if (!klen)
        return NX_ERR_TOO_BIG;
    rocksdb_delete(s->db, s->wopts, key, klen, &errptr);
    if (errptr) {
        rocksdb_free(errptr);
        return NX_ERR_IO;
    }
    return 0;
}

static void rdb_close(void *impl)
{
    struct rdb_store *s = impl;
    if (s->db)
        rocksdb_close(s->db);
    if (s->wopts)
        rocksdb_writeoptions_destroy(s->wopts);
    if (s->ropts)
        rocksdb_readoptions_destroy(s->ropts);
    if (s->opts)
        rocksdb_options_destroy(s->opts);
    free(s);
}

static const struct sbx_session_store_ops rdb_ops = {rdb_load, rdb_save, rdb_remove, rdb_close};

int sbx_session_store_rocksdb_open(const char *path, struct sbx_session_store *out, char *err,
                                   size_t err_len)
{
    struct rdb_store *s = calloc(1, sizeof *s);
    if (!s)
        return NX_ERR_NOMEM;
    s->opts = rocksdb_options_create();
    s->ropts = rocksdb_readoptions_create();
    s->wopts = rocksdb_writeoptions_create();
    if (!s->opts || !s->ropts || !s->wopts) {
        rdb_close(s);
        return NX_ERR_NOMEM;
    }
    rocksdb_options_set_create_if_missing(s->opts, 1);
    rocksdb_writeoptions_set_sync(s->wopts, 1);
    char *errptr = NULL;
    s->db = rocksdb_open(s->opts, path, &errptr);
    if (errptr) {
        sbx_errf(err, err_len, "session store: open %s: %s", path, errptr);
        rocksdb_free(errptr);
        rdb_close(s);
        return NX_ERR_IO;
    }
    out->ops = &rdb_ops;
    out->impl = s;
    return 0;
}
