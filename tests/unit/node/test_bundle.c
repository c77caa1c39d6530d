/*
 * test_bundle.c - the bundle archive (node/bundle.h): packing is
 * deterministic and round-trips, and malformed or hostile archives are
 * refused before anything is written.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "node/bundle.h"

static void write_file(const char *dir, const char *name, const char *text, mode_t mode)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    assert_int_equal(chmod(path, mode), 0);
}

/* A bundle directory: manifest.json, run.sh (executable), lib/, lib/a.txt, lib/b/. */
static void make_tree(char *dir)
{
    strcpy(dir, "/tmp/nx-bundle-test-XXXXXX");
    assert_non_null(mkdtemp(dir));
    write_file(dir, "manifest.json", "{\"name\":\"t\"}", 0644);
    write_file(dir, "run.sh", "#!/bin/sh\necho hi\n", 0755);
    char sub[512];
    snprintf(sub, sizeof sub, "%s/lib", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    write_file(sub, "a.txt", "alpha", 0600);
    snprintf(sub, sizeof sub, "%s/lib/b", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
}

static void rm_tree(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void pack_is_deterministic_and_round_trips(void **state)
{
    (void)state;
    char dir[64], dest[128], err[BUNDLE_ERR_MAX];
    make_tree(dir);
    uint8_t *a = NULL, *b = NULL, *c = NULL;
    size_t alen, blen, clen;
    assert_int_equal(bundle_pack(dir, &a, &alen, err, sizeof err), 0);
    assert_int_equal(bundle_pack(dir, &b, &blen, err, sizeof err), 0);
    assert_int_equal(alen, blen);
    assert_memory_equal(a, b, alen);
    assert_int_equal(bundle_check(a, alen, err, sizeof err), 0);
    const uint8_t *m;
    size_t mlen;
    assert_int_equal(bundle_manifest(a, alen, &m, &mlen), 0);
    assert_int_equal(mlen, strlen("{\"name\":\"t\"}"));
    assert_memory_equal(m, "{\"name\":\"t\"}", mlen);

    snprintf(dest, sizeof dest, "%s.out", dir);
    assert_int_equal(bundle_unpack(a, alen, dest, err, sizeof err), 0);
    char p[256];
    struct stat st;
    snprintf(p, sizeof p, "%s/run.sh", dest);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0755);
    snprintf(p, sizeof p, "%s/lib/a.txt", dest);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    assert_int_equal(st.st_size, 5);
    snprintf(p, sizeof p, "%s/lib/b", dest);
    assert_int_equal(stat(p, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    /* the unpacked tree packs to the same bytes, so to the same hash */
    assert_int_equal(bundle_pack(dest, &c, &clen, err, sizeof err), 0);
    assert_int_equal(clen, alen);
    assert_memory_equal(a, c, alen);
    uint8_t h1[BUNDLE_HASH_BYTES], h2[BUNDLE_HASH_BYTES];
    bundle_hash(a, alen, h1);
    bundle_hash(c, clen, h2);
    assert_memory_equal(h1, h2, sizeof h1);
    /* a second unpack to the same place loses */
    assert_int_equal(bundle_unpack(a, alen, dest, err, sizeof err), NX_ERR_EXISTS);
    free(a);
    free(b);
    free(c);
    rm_tree(dir);
    rm_tree(dest);
}

static void pack_refuses_symlinks_special_files_and_no_manifest(void **state)
{
    (void)state;
    char dir[64], p[256], err[BUNDLE_ERR_MAX];
    uint8_t *buf = NULL;
    size_t len;
    make_tree(dir);
    snprintf(p, sizeof p, "%s/lib/escape", dir);
    assert_int_equal(symlink("/etc/passwd", p), 0);
    assert_int_equal(bundle_pack(dir, &buf, &len, err, sizeof err), NX_ERR_INVAL);
    assert_non_null(strstr(err, "symlink"));
    assert_int_equal(unlink(p), 0);
    snprintf(p, sizeof p, "%s/fifo", dir);
    assert_int_equal(mkfifo(p, 0600), 0);
    assert_int_equal(bundle_pack(dir, &buf, &len, err, sizeof err), NX_ERR_INVAL);
    assert_non_null(strstr(err, "special"));
    assert_int_equal(unlink(p), 0);
    snprintf(p, sizeof p, "%s/manifest.json", dir);
    assert_int_equal(unlink(p), 0);
    assert_int_equal(bundle_pack(dir, &buf, &len, err, sizeof err), NX_ERR_INVAL);
    assert_non_null(strstr(err, "manifest"));
    snprintf(p, sizeof p, "%s/bad name", dir);
    write_file(dir, "manifest.json", "{}", 0644);
    write_file(dir, "bad name", "x", 0644);
    assert_int_equal(bundle_pack(dir, &buf, &len, err, sizeof err), NX_ERR_INVAL);
    rm_tree(dir);
}

/* ---- hand-made archives ---------------------------------------------------- */

struct arch {
    uint8_t b[4096];
    size_t n;
};

static void a_begin(struct arch *a, uint32_t count)
{
    memcpy(a->b, BUNDLE_MAGIC, 8);
    memcpy(a->b + 8, &count, 4); /* little-endian host */
    a->n = 12;
}

static void a_entry(struct arch *a, uint8_t kind, uint8_t flags, const char *path, const char *data)
{
    uint16_t plen = (uint16_t)strlen(path);
    a->b[a->n++] = kind;
    a->b[a->n++] = flags;
    memcpy(a->b + a->n, &plen, 2);
    a->n += 2;
    memcpy(a->b + a->n, path, plen);
    a->n += plen;
    if (kind == BUNDLE_FILE) {
        uint64_t size = strlen(data);
        memcpy(a->b + a->n, &size, 8);
        a->n += 8;
        memcpy(a->b + a->n, data, size);
        a->n += size;
    }
}

static int check(const struct arch *a)
{
    char err[BUNDLE_ERR_MAX];
    return bundle_check(a->b, a->n, err, sizeof err);
}

static void check_accepts_a_minimal_archive_and_every_truncation_fails(void **state)
{
    (void)state;
    struct arch a;
    a_begin(&a, 3);
    a_entry(&a, BUNDLE_DIR, 0, "d", NULL);
    a_entry(&a, BUNDLE_FILE, BUNDLE_FLAG_EXEC, "d/x", "abc");
    a_entry(&a, BUNDLE_FILE, 0, "manifest.json", "{}");
    assert_int_equal(check(&a), 0);
    char err[BUNDLE_ERR_MAX];
    for (size_t n = 0; n < a.n; n++)
        assert_int_equal(bundle_check(a.b, n, err, sizeof err), NX_ERR_DECODE);
    a.b[a.n++] = 0; /* trailing byte */
    assert_int_equal(check(&a), NX_ERR_DECODE);
}

static void check_refuses_hostile_paths(void **state)
{
    (void)state;
    static const char *const bad[] = {"../x", "/etc/x", "a/../../x", "./x", "a//b", "a/",
                                      "x y",  "",       "..",        "a/.", "\x01"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct arch a;
        a_begin(&a, 3);
        a_entry(&a, BUNDLE_DIR, 0, "a", NULL);
        a_entry(&a, BUNDLE_FILE, 0, "manifest.json", "{}");
        a_entry(&a, BUNDLE_FILE, 0, bad[i], "evil");
        assert_int_equal(check(&a), NX_ERR_DECODE);
    }
}

static void check_refuses_bad_structure(void **state)
{
    (void)state;
    struct arch a;
    /* out of order */
    a_begin(&a, 2);
    a_entry(&a, BUNDLE_FILE, 0, "manifest.json", "{}");
    a_entry(&a, BUNDLE_FILE, 0, "a", "x");
    assert_int_equal(check(&a), NX_ERR_DECODE);
    /* duplicate */
    a_begin(&a, 2);
    a_entry(&a, BUNDLE_FILE, 0, "manifest.json", "{}");
    a_entry(&a, BUNDLE_FILE, 0, "manifest.json", "{}");
    assert_int_equal(check(&a), NX_ERR_DECODE);
    /* parent not listed, and a file as a parent */
    a_begin(&a, 2);
    a_entry(&a, BUNDLE_FILE, 0, "d/x", "x");
    a_entry(&a, BUNDLE_FILE, 0, "manifest.json", "{}");
    assert_int_equal(check(&a), NX_ERR_DECODE);
    a_begin(&a, 3);
    a_entry(&a, BUNDLE_FILE, 0, "d", "x");
    a_entry(&a, BUNDLE_FILE, 0, "d/x", "x");
    a_entry(&a, BUNDLE_FILE, 0, "manifest.json", "{}");
    assert_int_equal(check(&a), NX_ERR_DECODE);
    /* unknown kind (a symlink would need one), flags on a directory, unknown flags */
    a_begin(&a, 2);
    a_entry(&a, 3, 0, "l", "/etc/passwd");
    a_entry(&a, BUNDLE_FILE, 0, "manifest.json", "{}");
    assert_int_equal(check(&a), NX_ERR_DECODE);
    a_begin(&a, 2);
    a_entry(&a, BUNDLE_DIR, 1, "d", NULL);
    a_entry(&a, BUNDLE_FILE, 0, "manifest.json", "{}");
    assert_int_equal(check(&a), NX_ERR_DECODE);
    a_begin(&a, 1);
    a_entry(&a, BUNDLE_FILE, 4, "manifest.json", "{}");
    assert_int_equal(check(&a), NX_ERR_DECODE);
    /* no manifest, or a manifest directory */
    a_begin(&a, 1);
    a_entry(&a, BUNDLE_FILE, 0, "x", "{}");
    assert_int_equal(check(&a), NX_ERR_DECODE);
    a_begin(&a, 1);
    a_entry(&a, BUNDLE_DIR, 0, "manifest.json", NULL);
    assert_int_equal(check(&a), NX_ERR_DECODE);
    /* a size beyond the archive, a count beyond the entries, a huge count, bad magic */
    a_begin(&a, 1);
    a_entry(&a, BUNDLE_FILE, 0, "manifest.json", "{}");
    uint64_t huge = 1ull << 40;
    memcpy(a.b + 12 + 4 + 13, &huge, 8);
    assert_int_equal(check(&a), NX_ERR_DECODE);
    a_begin(&a, 2);
    a_entry(&a, BUNDLE_FILE, 0, "manifest.json", "{}");
    assert_int_equal(check(&a), NX_ERR_DECODE);
    a_begin(&a, 0xffffffffu);
    a_entry(&a, BUNDLE_FILE, 0, "manifest.json", "{}");
    assert_int_equal(check(&a), NX_ERR_DECODE);
    a_begin(&a, 1);
    a_entry(&a, BUNDLE_FILE, 0, "manifest.json", "{}");
    a.b[0] = 'X';
    assert_int_equal(check(&a), NX_ERR_DECODE);
}

/* A hostile archive writes nothing: no destination, no temporary directory left. */
static void unpack_of_a_hostile_archive_leaves_nothing(void **state)
{
    (void)state;
    char dir[64], err[BUNDLE_ERR_MAX];
    strcpy(dir, "/tmp/nx-bundle-test-XXXXXX");
    assert_non_null(mkdtemp(dir));
    char dest[128];
    snprintf(dest, sizeof dest, "%s/out", dir);
    struct arch a;
    a_begin(&a, 2);
    a_entry(&a, BUNDLE_FILE, 0, "../escaped", "evil");
    a_entry(&a, BUNDLE_FILE, 0, "manifest.json", "{}");
    assert_int_equal(bundle_unpack(a.b, a.n, dest, err, sizeof err), NX_ERR_DECODE);
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    int entries = 0;
    while ((de = readdir(d)) != NULL)
        entries += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    closedir(d);
    assert_int_equal(entries, 0);
    char p[256];
    snprintf(p, sizeof p, "/tmp/escaped");
    assert_int_not_equal(access(p, F_OK), 0);
    rm_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pack_is_deterministic_and_round_trips),
        cmocka_unit_test(pack_refuses_symlinks_special_files_and_no_manifest),
        cmocka_unit_test(check_accepts_a_minimal_archive_and_every_truncation_fails),
        cmocka_unit_test(check_refuses_hostile_paths),
        cmocka_unit_test(check_refuses_bad_structure),
        cmocka_unit_test(unpack_of_a_hostile_archive_leaves_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
