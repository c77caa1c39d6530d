/*
 * agent_store.c - content-addressed bundle files (agent_store.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent_store.h"

static int mkdir_p(const char *path)
{
    return mkdir(path, 0700) == 0 || errno == EEXIST ? 0 : -1;
}

int agent_store_open(struct agent_store *s, const char *data_dir, char *err, size_t cap)
{
    char agents[AGENT_STORE_PATH_MAX];
    snprintf(agents, sizeof agents, "%.4000s/agents", data_dir);
    snprintf(s->bundles, sizeof s->bundles, "%.4000s/agents/bundles", data_dir);
    snprintf(s->cache, sizeof s->cache, "%.4000s/agents/cache", data_dir);
    if (mkdir_p(agents) != 0 || mkdir_p(s->bundles) != 0 || mkdir_p(s->cache) != 0) {
        snprintf(err, cap, "agents: cannot create %s: %s", s->cache, strerror(errno));
        return NX_ERR_IO;
    }
    /* the sandbox's unprivileged user reads the unpacked bundles through a bind mount */
    if (chmod(s->cache, 0755) != 0) {
        snprintf(err, cap, "agents: chmod %s: %s", s->cache, strerror(errno));
        return NX_ERR_IO;
    }
    return NX_OK;
}

static void path_of(const struct agent_store *s, const uint8_t hash[BUNDLE_HASH_BYTES],
                    const char *suffix, char *out, size_t cap)
{
    char hex[BUNDLE_HASH_HEX_LEN + 1];
    nx_hex_encode(hex, hash, BUNDLE_HASH_BYTES);
    snprintf(out, cap, "%.4000s/%s%s", s->bundles, hex, suffix);
}

bool agent_store_has(const struct agent_store *s, const uint8_t hash[BUNDLE_HASH_BYTES])
{
    char p[AGENT_STORE_PATH_MAX + 128];
    path_of(s, hash, ".nxb", p, sizeof p);
    return access(p, R_OK) == 0;
}

static int write_file(const char *path, const uint8_t *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, buf + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    int rc = off == len && fsync(fd) == 0 ? 0 : -1;
    close(fd);
    return rc;
}

/* Checks format and hash; 0 or an error with err filled. */
static int verify(const uint8_t hash[BUNDLE_HASH_BYTES], const uint8_t *buf, size_t len, char *err,
                  size_t cap)
{
    uint8_t got[BUNDLE_HASH_BYTES];
    bundle_hash(buf, len, got);
    if (sodium_memcmp(got, hash, BUNDLE_HASH_BYTES) != 0) {
        char want[BUNDLE_HASH_HEX_LEN + 1], have[BUNDLE_HASH_HEX_LEN + 1];
        nx_hex_encode(want, hash, BUNDLE_HASH_BYTES);
        nx_hex_encode(have, got, BUNDLE_HASH_BYTES);
        snprintf(err, cap, "bundle hash mismatch: expected %.16s..., the bytes hash to %.16s...",
                 want, have);
        return NX_ERR_CORRUPT;
    }
    return bundle_check(buf, len, err, cap);
}

int agent_store_put(struct agent_store *s, const uint8_t hash[BUNDLE_HASH_BYTES],
                    const uint8_t *buf, size_t len, char *err, size_t cap)
{
    int rc = verify(hash, buf, len, err, cap);
    if (rc != NX_OK)
        return rc;
    if (agent_store_has(s, hash))
        return NX_OK;
    char final[AGENT_STORE_PATH_MAX + 128], tmp[AGENT_STORE_PATH_MAX + 160];
    path_of(s, hash, ".nxb", final, sizeof final);
    snprintf(tmp, sizeof tmp, "%s.tmp%d", final, (int)getpid());
    if (write_file(tmp, buf, len) != 0 || rename(tmp, final) != 0) {
        snprintf(err, cap, "agents: cannot store %s: %s", final, strerror(errno));
        unlink(tmp);
        return NX_ERR_IO;
    }
    return NX_OK;
}

static int read_whole(const char *path, uint8_t **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? NX_ERR_NOT_FOUND : NX_ERR_IO;
    struct stat st;
    int rc = NX_OK;
    uint8_t *buf = NULL;
    if (fstat(fd, &st) != 0)
        rc = NX_ERR_IO;
    else if ((uint64_t)st.st_size > BUNDLE_MAX_BYTES)
        rc = NX_ERR_TOO_BIG;
    else if ((buf = malloc((size_t)st.st_size + 1)) == NULL)
        rc = NX_ERR_NOMEM;
    size_t off = 0;
    while (rc == NX_OK && off < (size_t)st.st_size) {
        ssize_t r = pread(fd, buf + off, (size_t)st.st_size - off, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            rc = NX_ERR_IO;
        else
            off += (size_t)r;
    }
    close(fd);
    if (rc != NX_OK) {
        free(buf);
        return rc;
    }
    *out = buf;
    *len = off;
    return NX_OK;
}

int agent_store_upload(struct agent_store *s, const uint8_t hash[BUNDLE_HASH_BYTES],
                       uint64_t offset, uint64_t total, const uint8_t *piece, size_t len,
                       bool *complete, char *err, size_t cap)
{
    *complete = false;
    if (total == 0 || total > BUNDLE_MAX_BYTES || offset > total || len > total - offset) {
        snprintf(err, cap, "upload: offset, length and total (at most %u MiB) do not fit",
                 BUNDLE_MAX_BYTES >> 20);
        return NX_ERR_INVAL;
    }
    if (agent_store_has(s, hash) && offset + len == total) {
        *complete = true; /* already here: nothing to write */
        return NX_OK;
    }
    char part[AGENT_STORE_PATH_MAX + 128];
    path_of(s, hash, ".part", part, sizeof part);
    int fd = open(part, O_WRONLY | O_CREAT | O_CLOEXEC | (offset == 0 ? O_TRUNC : 0), 0600);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(err, cap, "upload: cannot open %s: %s", part, strerror(errno));
        if (fd >= 0)
            close(fd);
        return NX_ERR_IO;
    }
    if ((uint64_t)st.st_size != offset) {
        close(fd);
        snprintf(err, cap, "upload: expected offset %lld, got %llu", (long long)st.st_size,
                 (unsigned long long)offset);
        return NX_ERR_STATE;
    }
    size_t done = 0;
    while (done < len) {
        ssize_t w = pwrite(fd, piece + done, len - done, (off_t)(offset + done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        done += (size_t)w;
    }
    close(fd);
    if (done != len) {
        snprintf(err, cap, "upload: write %s: %s", part, strerror(errno));
        return NX_ERR_IO;
    }
    if (offset + len < total)
        return NX_OK;
    uint8_t *whole = NULL;
    size_t whole_len = 0;
    int rc = read_whole(part, &whole, &whole_len);
    if (rc == NX_OK)
        rc = agent_store_put(s, hash, whole, whole_len, err, cap);
    else
        snprintf(err, cap, "upload: cannot read back %s: %s", part, nx_strerror(rc));
    free(whole);
    unlink(part);
    *complete = rc == NX_OK;
    return rc;
}

int agent_store_read(const struct agent_store *s, const uint8_t hash[BUNDLE_HASH_BYTES],
                     uint64_t offset, uint8_t *buf, size_t max, size_t *got, uint64_t *total)
{
    char p[AGENT_STORE_PATH_MAX + 128];
    path_of(s, hash, ".nxb", p, sizeof p);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? NX_ERR_NOT_FOUND : NX_ERR_IO;
    struct stat st;
    int rc = NX_OK;
    *got = 0;
    if (fstat(fd, &st) != 0) {
        rc = NX_ERR_IO;
    } else {
        *total = (uint64_t)st.st_size;
        if (offset > *total)
            rc = NX_ERR_INVAL;
        size_t want = rc ? 0 : (size_t)((*total - offset) < max ? (*total - offset) : max);
        while (rc == NX_OK && *got < want) {
            ssize_t r = pread(fd, buf + *got, want - *got, (off_t)(offset + *got));
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                rc = NX_ERR_IO;
            else
                *got += (size_t)r;
        }
    }
    close(fd);
    return rc;
}

int agent_store_unpacked(struct agent_store *s, const uint8_t hash[BUNDLE_HASH_BYTES], char *dir,
                         size_t dir_cap, char *err, size_t cap)
{
    char hex[BUNDLE_HASH_HEX_LEN + 1];
    nx_hex_encode(hex, hash, BUNDLE_HASH_BYTES);
    snprintf(dir, dir_cap, "%.4000s/%s", s->cache, hex);
    struct stat st;
    if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
        return NX_OK;
    char p[AGENT_STORE_PATH_MAX + 128];
    path_of(s, hash, ".nxb", p, sizeof p);
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = read_whole(p, &buf, &len);
    if (rc != NX_OK) {
        snprintf(err, cap, "agents: bundle %.16s... is not stored here: %s", hex, nx_strerror(rc));
        return rc;
    }
    /* the name was checked when stored; check again: the file is on disk, not in memory */
    rc = verify(hash, buf, len, err, cap);
    if (rc == NX_OK) {
        rc = bundle_unpack(buf, len, dir, err, cap);
        if (rc == NX_ERR_EXISTS)
            rc = NX_OK; /* unpacked meanwhile */
    }
    free(buf);
    return rc;
}
