/*
 * bundle.c - the deterministic bundle archive (layout in bundle.h and
 * docs/agents.md).
 *
 * Packing walks the directory with lstat (never following a link), collects
 * every entry's relative path, sorts the paths bytewise and writes them in
 * that order. Checking is one pass over the bytes with a sticky error; each
 * path must be greater than the one before (so no duplicates and one order)
 * and its parent must be a directory entry already seen. Unpacking writes
 * only below a fresh private directory it created itself, with O_EXCL and
 * O_NOFOLLOW, and renames it into place once complete.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bundle.h"

struct pack_entry {
    char *path; /* owned, relative */
    uint8_t kind;
    uint8_t flags;
    uint64_t size;
};

struct pack {
    struct pack_entry *v;
    size_t n, cap;
    uint64_t bytes; /* archive size so far */
    char *err;
    size_t err_cap;
};

static int fail(char *err, size_t cap, int rc, const char *fmt, ...) NX_PRINTF(4, 5);
static int fail(char *err, size_t cap, int rc, const char *fmt, ...)
{
    if (cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, cap, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
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
static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* A component: 1..255 printable ASCII bytes, no '/', not "." or "..". */
static bool component_ok(const char *s, size_t n)
{
    if (n == 0 || n > 255 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] <= 0x20 || s[i] >= 0x7f || s[i] == '/')
            return false;
    return true;
}

/* Whole relative path; *depth gets its number of components. */
static bool path_ok(const char *p, size_t n, unsigned *depth)
{
    if (n == 0 || n > BUNDLE_PATH_MAX)
        return false;
    unsigned d = 0;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || p[i] == '/') {
            if (!component_ok(p + start, i - start))
                return false;
            d++;
            start = i + 1;
        }
    }
    *depth = d;
    return d <= BUNDLE_DEPTH_MAX;
}

/* ---- pack ---------------------------------------------------------------- */

static int add_entry(struct pack *pk, const char *rel, uint8_t kind, uint8_t flags, uint64_t size)
{
    size_t plen = strlen(rel);
    unsigned depth;
    if (!path_ok(rel, plen, &depth))
        return fail(pk->err, pk->err_cap, NX_ERR_INVAL,
                    "bundle: '%s': names must be printable ASCII without spaces, at most %u deep",
                    rel, BUNDLE_DEPTH_MAX);
    if (pk->n == BUNDLE_MAX_ENTRIES)
        return fail(pk->err, pk->err_cap, NX_ERR_TOO_BIG, "bundle: more than %u entries",
                    BUNDLE_MAX_ENTRIES);
    pk->bytes += 4 + plen + (kind == BUNDLE_FILE ? 8 + size : 0);
    if (pk->bytes > BUNDLE_MAX_BYTES)
        return fail(pk->err, pk->err_cap, NX_ERR_TOO_BIG, "bundle: larger than %u MiB",
                    BUNDLE_MAX_BYTES >> 20);
    if (pk->n == pk->cap) {
        size_t cap = pk->cap ? 2 * pk->cap : 64;
        struct pack_entry *v = realloc(pk->v, cap * sizeof *v);
        if (v == NULL)
            return NX_ERR_NOMEM;
        pk->v = v;
        pk->cap = cap;
    }
    char *copy = strdup(rel);
    if (copy == NULL)
        return NX_ERR_NOMEM;
    pk->v[pk->n++] = (struct pack_entry){copy, kind, flags, size};
    return NX_OK;
}

static int walk(struct pack *pk, const char *root, const char *rel)
{
    char path[BUNDLE_PATH_MAX + 4096];
    snprintf(path, sizeof path, "%s%s%s", root, rel[0] ? "/" : "", rel);
    DIR *d = opendir(path);
    if (d == NULL)
        return fail(pk->err, pk->err_cap, NX_ERR_IO, "bundle: cannot open %s: %s", path,
                    strerror(errno));
    int rc = NX_OK;
    struct dirent *de;
    while (rc == NX_OK && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char sub[BUNDLE_PATH_MAX + 2];
        int n = snprintf(sub, sizeof sub, "%s%s%s", rel, rel[0] ? "/" : "", de->d_name);
        if (n < 0 || (size_t)n > BUNDLE_PATH_MAX) {
            rc = fail(pk->err, pk->err_cap, NX_ERR_TOO_BIG, "bundle: path too long under %s", rel);
            break;
        }
        char full[BUNDLE_PATH_MAX + 4096];
        snprintf(full, sizeof full, "%s/%s", root, sub);
        struct stat st;
        if (lstat(full, &st) != 0) {
            rc = fail(pk->err, pk->err_cap, NX_ERR_IO, "bundle: %s: %s", full, strerror(errno));
        } else if (S_ISDIR(st.st_mode)) {
            rc = add_entry(pk, sub, BUNDLE_DIR, 0, 0);
            if (rc == NX_OK)
                rc = walk(pk, root, sub);
        } else if (S_ISREG(st.st_mode)) {
            rc = add_entry(pk, sub, BUNDLE_FILE, (st.st_mode & 0111) ? BUNDLE_FLAG_EXEC : 0,
                           (uint64_t)st.st_size);
        } else {
            rc = fail(pk->err, pk->err_cap, NX_ERR_INVAL,
                      "bundle: '%s' is a %s; a bundle holds only files and directories", sub,
                      S_ISLNK(st.st_mode) ? "symlink" : "special file");
        }
    }
    closedir(d);
    return rc;
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const struct pack_entry *)a)->path, ((const struct pack_entry *)b)->path);
}

/* Appends one file's bytes; its size must not have changed since the walk. */
static int copy_file(const char *full, uint8_t *dst, uint64_t size, char *err, size_t cap)
{
    int fd = open(full, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return fail(err, cap, NX_ERR_IO, "bundle: cannot open %s: %s", full, strerror(errno));
    uint64_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, dst + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (uint64_t)r;
    }
    uint8_t extra;
    bool longer = got == size && read(fd, &extra, 1) == 1;
    close(fd);
    if (got != size || longer)
        return fail(err, cap, NX_ERR_IO, "bundle: %s changed while it was packed", full);
    return NX_OK;
}

int bundle_pack(const char *dir, uint8_t **out, size_t *len, char *err, size_t cap)
{
    struct pack pk = {.err = err, .err_cap = cap, .bytes = BUNDLE_HEADER_BYTES};
    uint8_t *buf = NULL;
    int rc = walk(&pk, dir, "");
    if (rc != NX_OK)
        goto out;
    qsort(pk.v, pk.n, sizeof *pk.v, cmp_entry);
    bool manifest = false;
    for (size_t i = 0; i < pk.n; i++)
        manifest |= pk.v[i].kind == BUNDLE_FILE && strcmp(pk.v[i].path, BUNDLE_MANIFEST) == 0;
    if (!manifest) {
        rc = fail(err, cap, NX_ERR_INVAL, "bundle: %s has no %s file", dir, BUNDLE_MANIFEST);
        goto out;
    }
    buf = malloc(pk.bytes);
    if (buf == NULL) {
        rc = NX_ERR_NOMEM;
        goto out;
    }
    memcpy(buf, BUNDLE_MAGIC, BUNDLE_MAGIC_BYTES);
    put_u32(buf + BUNDLE_MAGIC_BYTES, (uint32_t)pk.n);
    size_t off = BUNDLE_HEADER_BYTES;
    for (size_t i = 0; i < pk.n && rc == NX_OK; i++) {
        const struct pack_entry *e = &pk.v[i];
        size_t plen = strlen(e->path);
        buf[off] = e->kind;
        buf[off + 1] = e->flags;
        put_u16(buf + off + 2, (uint16_t)plen);
        memcpy(buf + off + 4, e->path, plen);
        off += 4 + plen;
        if (e->kind == BUNDLE_FILE) {
            put_u64(buf + off, e->size);
            off += 8;
            char full[BUNDLE_PATH_MAX + 4096];
            snprintf(full, sizeof full, "%s/%s", dir, e->path);
            rc = copy_file(full, buf + off, e->size, err, cap);
            off += e->size;
        }
    }
    if (rc == NX_OK) {
        NX_ASSERT(off == pk.bytes);
        *out = buf;
        *len = off;
        buf = NULL;
    }
out:
    free(buf);
    for (size_t i = 0; i < pk.n; i++)
        free(pk.v[i].path);
    free(pk.v);
    return rc;
}

/* ---- check ----------------------------------------------------------------- */

/* One entry as read from an archive; path and data borrowed from the buffer. */
struct entry {
    uint8_t kind, flags;
    const char *path;
    size_t path_len;
    const uint8_t *data;
    uint64_t size;
};

struct reader {
    const uint8_t *buf;
    size_t len, off;
    uint32_t count, index;
    /* the previous path, and the directories seen (their paths, borrowed) */
    const char *prev;
    size_t prev_len;
    struct entry *dirs;
    size_t n_dirs;
};

static bool dir_known(const struct reader *r, const char *p, size_t n)
{
    for (size_t i = 0; i < r->n_dirs; i++) /* directories are few; linear is fine */
        if (r->dirs[i].path_len == n && memcmp(r->dirs[i].path, p, n) == 0)
            return true;
    return false;
}

/* Reads and checks the next entry. 1 and *e set, 0 at the end, <0 on a problem. */
static int next_entry(struct reader *r, struct entry *e, char *err, size_t cap)
{
    if (r->index == r->count)
        return r->off == r->len
                   ? 0
                   : fail(err, cap, NX_ERR_DECODE, "bundle: bytes after the last entry");
    if (r->len - r->off < 4)
        return fail(err, cap, NX_ERR_DECODE, "bundle: truncated entry %u", r->index);
    const uint8_t *p = r->buf + r->off;
    e->kind = p[0];
    e->flags = p[1];
    e->path_len = (size_t)get_le(p + 2, 2);
    e->path = (const char *)p + 4;
    r->off += 4;
    unsigned depth;
    if (e->path_len > r->len - r->off)
        return fail(err, cap, NX_ERR_DECODE, "bundle: truncated path of entry %u", r->index);
    r->off += e->path_len;
    if (!path_ok(e->path, e->path_len, &depth))
        return fail(err, cap, NX_ERR_DECODE, "bundle: entry %u: bad path", r->index);
    if ((e->kind != BUNDLE_DIR && e->kind != BUNDLE_FILE) ||
        (e->kind == BUNDLE_DIR ? e->flags != 0 : (e->flags & ~BUNDLE_FLAG_EXEC) != 0))
        return fail(err, cap, NX_ERR_DECODE, "bundle: entry %u: bad kind or flags", r->index);
    /* strictly increasing: one order, no duplicates */
    size_t m = e->path_len < r->prev_len ? e->path_len : r->prev_len;
    int c = r->prev ? memcmp(r->prev, e->path, m) : -1;
    if (r->prev && (c > 0 || (c == 0 && e->path_len <= r->prev_len)))
        return fail(err, cap, NX_ERR_DECODE, "bundle: entry %u out of order or repeated", r->index);
    const char *slash = memrchr(e->path, '/', e->path_len);
    if (slash && !dir_known(r, e->path, (size_t)(slash - e->path)))
        return fail(err, cap, NX_ERR_DECODE, "bundle: entry %u: parent directory not listed",
                    r->index);
    e->size = 0;
    e->data = NULL;
    if (e->kind == BUNDLE_FILE) {
        if (r->len - r->off < 8)
            return fail(err, cap, NX_ERR_DECODE, "bundle: truncated size of entry %u", r->index);
        e->size = get_le(r->buf + r->off, 8);
        r->off += 8;
        if (e->size > r->len - r->off)
            return fail(err, cap, NX_ERR_DECODE, "bundle: entry %u larger than the archive",
                        r->index);
        e->data = r->buf + r->off;
        r->off += (size_t)e->size;
    } else {
        r->dirs[r->n_dirs++] = *e;
    }
    r->prev = e->path;
    r->prev_len = e->path_len;
    r->index++;
    return 1;
}

static int reader_init(struct reader *r, const uint8_t *buf, size_t len, char *err, size_t cap)
{
    memset(r, 0, sizeof *r);
    if (len > BUNDLE_MAX_BYTES)
        return fail(err, cap, NX_ERR_DECODE, "bundle: larger than %u MiB", BUNDLE_MAX_BYTES >> 20);
    if (len < BUNDLE_HEADER_BYTES || memcmp(buf, BUNDLE_MAGIC, BUNDLE_MAGIC_BYTES) != 0)
        return fail(err, cap, NX_ERR_DECODE, "bundle: not a bundle archive (magic)");
    r->buf = buf;
    r->len = len;
    r->off = BUNDLE_HEADER_BYTES;
    r->count = (uint32_t)get_le(buf + BUNDLE_MAGIC_BYTES, 4);
    if (r->count > BUNDLE_MAX_ENTRIES)
        return fail(err, cap, NX_ERR_DECODE, "bundle: more than %u entries", BUNDLE_MAX_ENTRIES);
    r->dirs = calloc(r->count ? r->count : 1, sizeof *r->dirs);
    return r->dirs ? NX_OK : NX_ERR_NOMEM;
}

/* Calls fn per entry after checking it; checks the whole archive first when fn is NULL. */
static int scan(const uint8_t *buf, size_t len, char *err, size_t cap,
                int (*fn)(void *arg, const struct entry *e), void *arg)
{
    struct reader r;
    int rc = reader_init(&r, buf, len, err, cap);
    bool manifest = false;
    struct entry e;
    while (rc == NX_OK && (rc = next_entry(&r, &e, err, cap)) == 1) {
        rc = NX_OK;
        manifest |= e.kind == BUNDLE_FILE && e.path_len == strlen(BUNDLE_MANIFEST) &&
                    memcmp(e.path, BUNDLE_MANIFEST, e.path_len) == 0;
        if (fn)
            rc = fn(arg, &e);
    }
    free(r.dirs);
    if (rc == 0 && !manifest)
        rc = fail(err, cap, NX_ERR_DECODE, "bundle: no top-level %s", BUNDLE_MANIFEST);
    return rc;
}

int bundle_check(const uint8_t *buf, size_t len, char *err, size_t cap)
{
    return scan(buf, len, err, cap, NULL, NULL);
}

struct find_manifest {
    const uint8_t *data;
    size_t len;
};

static int on_find_manifest(void *arg, const struct entry *e)
{
    struct find_manifest *f = arg;
    if (e->kind == BUNDLE_FILE && e->path_len == strlen(BUNDLE_MANIFEST) &&
        memcmp(e->path, BUNDLE_MANIFEST, e->path_len) == 0) {
        f->data = e->data;
        f->len = (size_t)e->size;
    }
    return NX_OK;
}

int bundle_manifest(const uint8_t *buf, size_t len, const uint8_t **manifest, size_t *manifest_len)
{
    struct find_manifest f = {0};
    int rc = scan(buf, len, NULL, 0, on_find_manifest, &f);
    if (rc != NX_OK)
        return rc;
    *manifest = f.data;
    *manifest_len = f.len;
    return NX_OK;
}

/* ---- unpack ---------------------------------------------------------------- */

struct unpack {
    int root_fd; /* the private temporary directory */
    char *err;
    size_t err_cap;
};

static int write_all(int fd, const uint8_t *p, uint64_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n > (1u << 30) ? (1u << 30) : (size_t)n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (uint64_t)w;
    }
    return 0;
}

static int on_unpack(void *arg, const struct entry *e)
{
    struct unpack *u = arg;
    char path[BUNDLE_PATH_MAX + 1];
    memcpy(path, e->path, e->path_len);
    path[e->path_len] = '\0';
    /* Relative to a directory we created, with no symlinks in it (the format
     * has none) and checked paths: nothing can land outside it. */
    if (e->kind == BUNDLE_DIR) {
        if (mkdirat(u->root_fd, path, 0755) != 0)
            return fail(u->err, u->err_cap, NX_ERR_IO, "bundle: mkdir %s: %s", path,
                        strerror(errno));
        return NX_OK;
    }
    mode_t mode = (e->flags & BUNDLE_FLAG_EXEC) ? 0755 : 0644;
    int fd = openat(u->root_fd, path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0)
        return fail(u->err, u->err_cap, NX_ERR_IO, "bundle: create %s: %s", path, strerror(errno));
    int rc =
        write_all(fd, e->data, e->size) == 0 && fchmod(fd, mode) == 0 && fsync(fd) == 0
            ? NX_OK
            : fail(u->err, u->err_cap, NX_ERR_IO, "bundle: write %s: %s", path, strerror(errno));
    close(fd);
    return rc;
}

static int remove_tree_at(int dfd)
{
    DIR *d = fdopendir(dfd);
    if (d == NULL) {
        close(dfd);
        return -1;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (unlinkat(dirfd(d), de->d_name, 0) == 0)
            continue;
        int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub >= 0)
            (void)remove_tree_at(sub);
        (void)unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR);
    }
    closedir(d);
    return 0;
}

static void remove_tree(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0)
        (void)remove_tree_at(fd);
    (void)rmdir(path);
}

int bundle_unpack(const uint8_t *buf, size_t len, const char *dest, char *err, size_t cap)
{
    int rc = bundle_check(buf, len, err, cap);
    if (rc != NX_OK)
        return rc;
    struct stat st;
    if (lstat(dest, &st) == 0)
        return fail(err, cap, NX_ERR_EXISTS, "bundle: %s exists", dest);
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", dest) >= (int)sizeof tmp)
        return fail(err, cap, NX_ERR_INVAL, "bundle: destination path too long");
    if (mkdtemp(tmp) == NULL)
        return fail(err, cap, NX_ERR_IO, "bundle: mkdtemp %s: %s", tmp, strerror(errno));
    struct unpack u = {.err = err, .err_cap = cap};
    u.root_fd = open(tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (u.root_fd < 0) {
        rc = fail(err, cap, NX_ERR_IO, "bundle: open %s: %s", tmp, strerror(errno));
    } else {
        rc = scan(buf, len, err, cap, on_unpack, &u);
        if (rc == NX_OK && (fchmod(u.root_fd, 0755) != 0 || fsync(u.root_fd) != 0))
            rc = fail(err, cap, NX_ERR_IO, "bundle: sync %s: %s", tmp, strerror(errno));
        close(u.root_fd);
    }
    if (rc == NX_OK && rename(tmp, dest) != 0) {
        rc = errno == EEXIST || errno == ENOTEMPTY
                 ? fail(err, cap, NX_ERR_EXISTS, "bundle: %s exists", dest)
                 : fail(err, cap, NX_ERR_IO, "bundle: rename to %s: %s", dest, strerror(errno));
    }
    if (rc != NX_OK)
        remove_tree(tmp);
    return rc;
}

void bundle_hash(const uint8_t *buf, size_t len, uint8_t hash[BUNDLE_HASH_BYTES])
{
    crypto_generichash(hash, BUNDLE_HASH_BYTES, buf, len, NULL, 0);
}
