/*
 * fuzz_bundle.c - the bundle archive reader (node/bundle.h) on arbitrary bytes.
 *
 * Invariants: bundle_check never crashes and either accepts or refuses; an
 * accepted archive has a manifest (bundle_manifest agrees), unpacks into a
 * fresh directory, and that directory packs back to exactly the same bytes
 * (the format is canonical: one archive per tree). A refused archive
 * unpacks to nothing.
 */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "node/bundle.h"
#include "tests/fuzz/fuzz_harness.h"

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void rm_tree(const char *dir)
{
    if (nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[BUNDLE_ERR_MAX];
    int rc = bundle_check(data, size, err, sizeof err);
    const uint8_t *m;
    size_t mlen;
    if (rc != NX_OK) { /* refused before any file is touched: a path that cannot be made */
        NX_ASSERT(rc == NX_ERR_DECODE);
        const char *nowhere = "/nonexistent-nx-fuzz/out";
        NX_ASSERT(bundle_unpack(data, size, nowhere, err, sizeof err) == NX_ERR_DECODE);
        NX_ASSERT(bundle_manifest(data, size, &m, &mlen) == NX_ERR_DECODE);
        return 0;
    }
    char root[] = "/tmp/nx-fuzz-bundle-XXXXXX";
    if (mkdtemp(root) == NULL)
        abort();
    char dest[64];
    snprintf(dest, sizeof dest, "%s/out", root);
    int urc = bundle_unpack(data, size, dest, err, sizeof err);
    NX_ASSERT(bundle_manifest(data, size, &m, &mlen) == NX_OK && m >= data &&
              m + mlen <= data + size);
    NX_ASSERT(urc == NX_OK);
    uint8_t *again = NULL;
    size_t len = 0;
    NX_ASSERT(bundle_pack(dest, &again, &len, err, sizeof err) == NX_OK);
    NX_ASSERT(len == size && memcmp(again, data, size) == 0);
    free(again);
    rm_tree(root);
    return 0;
}

/* ---- seeds: valid archives made here ------------------------------------------ */

struct w {
    uint8_t *b;
    size_t n, cap;
};

static void put(struct w *w, const void *p, size_t n)
{
    if (w->n + n <= w->cap)
        memcpy(w->b + w->n, p, n);
    w->n += n;
}

static void entry(struct w *w, uint8_t kind, uint8_t flags, const char *path, const char *data)
{
    uint8_t hdr[4] = {kind, flags, (uint8_t)strlen(path), (uint8_t)(strlen(path) >> 8)};
    put(w, hdr, 4);
    put(w, path, strlen(path));
    if (kind == BUNDLE_FILE) {
        uint64_t n = strlen(data);
        uint8_t sz[8];
        for (int i = 0; i < 8; i++)
            sz[i] = (uint8_t)(n >> (8 * i));
        put(w, sz, 8);
        put(w, data, n);
    }
}

size_t fuzz_seed(size_t i, uint8_t *buf, size_t cap)
{
    struct w w = {buf, 0, cap};
    uint8_t count[4] = {0};
    put(&w, BUNDLE_MAGIC, BUNDLE_MAGIC_BYTES);
    switch (i) {
    case 0:
        count[0] = 1;
        put(&w, count, 4);
        entry(&w, BUNDLE_FILE, 0, "manifest.json", "{\"name\":\"x\"}");
        break;
    case 1:
        count[0] = 4;
        put(&w, count, 4);
        entry(&w, BUNDLE_FILE, BUNDLE_FLAG_EXEC, "agent.sh", "#!/bin/sh\necho hi\n");
        entry(&w, BUNDLE_DIR, 0, "lib", NULL);
        entry(&w, BUNDLE_FILE, 0, "lib/data.txt", "alpha beta");
        entry(&w, BUNDLE_FILE, 0, "manifest.json", "{}");
        break;
    case 2:
        count[0] = 4;
        put(&w, count, 4);
        entry(&w, BUNDLE_DIR, 0, "a", NULL);
        entry(&w, BUNDLE_DIR, 0, "a/b", NULL);
        entry(&w, BUNDLE_FILE, 0, "a/b/c", "");
        entry(&w, BUNDLE_FILE, 0, "manifest.json", "{\"kind\":\"stateless\"}");
        break;
    default:
        return 0;
    }
    return w.n <= cap ? w.n : 0;
}

const struct fuzz_regression *fuzz_regressions(size_t *n)
{
    *n = 0;
    return NULL;
}
