/*
 * identity.c - the node's secrets on disk: node.key, operator.token, cluster.id.
 *
 * node.key is text so an operator can inspect it:
 *     nexus-node-key-v1
 *     seed=<64 hex chars: the Ed25519 seed>
 *     pk=<64 hex chars: the public key derived from it>
 * The public key is redundant on purpose: on load we derive it again from the
 * seed and compare, so a flipped bit in the file is caught instead of silently
 * giving the node a new identity.
 *
 * Every file is written to a temporary name with mode 0600, synced, then
 * renamed, so a crash never leaves a half-written secret. A key or token file
 * that group or others can read is refused: someone may already have it.
 */
#include "node.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEY_MAGIC "nexus-node-key-v1"
#define SECRET_FILE_MAX 512

/* Formats a one-line error into err, with strerror(errnum) appended when errnum != 0. */
static int fail(char *err, size_t cap, int code, int errnum, const char *fmt, ...) NX_PRINTF(5, 6);
static int fail(char *err, size_t cap, int code, int errnum, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err, cap, fmt, ap);
    va_end(ap);
    if (errnum && n >= 0 && (size_t)n < cap)
        snprintf(err + n, cap - (size_t)n, ": %s", strerror(errnum));
    return code;
}

int node_data_dir_prepare(const char *dir, char *err, size_t cap)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
        return fail(err, cap, NX_ERR_INVAL, 0, "data directory path too long: %s", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return fail(err, cap, NX_ERR_IO, errno, "cannot create %s", path);
        *p = '/';
    }
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return fail(err, cap, NX_ERR_IO, errno, "cannot create data directory %s", path);
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return fail(err, cap, NX_ERR_IO, 0, "data directory %s is not a directory", path);
    return NX_OK;
}

int node_file_write_atomic(const char *dir, const char *name, const char *data, char *err,
                           size_t cap)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name);
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return fail(err, cap, NX_ERR_IO, errno, "cannot create %s", tmp);
    size_t len = strlen(data);
    ssize_t w = write(fd, data, len);
    if (w != (ssize_t)len || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return fail(err, cap, NX_ERR_IO, e, "cannot write %s", tmp);
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return fail(err, cap, NX_ERR_IO, e, "cannot rename to %s", path);
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd); /* best effort: the file itself is already synced */
        close(dfd);
    }
    return NX_OK;
}

/*
 * Reads a small secret file into buf (NUL-terminated). Checks the mode:
 * anything readable by group or others is refused. NX_ERR_NOT_FOUND when the
 * file does not exist.
 */
static int read_secret_file(const char *dir, const char *name, char *buf, size_t buf_cap, char *err,
                            size_t cap)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT)
            return NX_ERR_NOT_FOUND;
        return fail(err, cap, NX_ERR_IO, errno, "cannot open %s", path);
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return fail(err, cap, NX_ERR_IO, e, "cannot stat %s", path);
    }
    if (st.st_mode & 0077) {
        close(fd);
        return fail(err, cap, NX_ERR_PERM, 0,
                    "%s is readable by others (mode %03o); run: chmod 600 %s", path,
                    (unsigned)(st.st_mode & 0777), path);
    }
    ssize_t n = read(fd, buf, buf_cap - 1);
    int e = errno;
    close(fd);
    if (n < 0)
        return fail(err, cap, NX_ERR_IO, e, "cannot read %s", path);
    buf[n] = '\0';
    return NX_OK;
}

static int parse_key_file(const char *text, uint8_t seed[32], uint8_t pk[32])
{
    char seed_hex[65], pk_hex[65];
    char magic[32];
    if (sscanf(text, "%31s seed=%64s pk=%64s", magic, seed_hex, pk_hex) != 3)
        return NX_ERR_CORRUPT;
    if (strcmp(magic, KEY_MAGIC) != 0)
        return NX_ERR_CORRUPT;
    if (nx_hex_decode(seed, 32, seed_hex) != NX_OK || nx_hex_decode(pk, 32, pk_hex) != NX_OK)
        return NX_ERR_CORRUPT;
    return NX_OK;
}

static int identity_from_seed(struct node_identity *id, const uint8_t seed[32])
{
    id->sk = sodium_malloc(NODE_SK_BYTES);
    if (id->sk == NULL)
        return NX_ERR_NOMEM;
    crypto_sign_seed_keypair(id->pk, id->sk, seed);
    nx_hex_encode(id->id_hex, id->pk, NODE_PK_BYTES);
    return NX_OK;
}

static int create_key_file(struct node_identity *id, const char *dir, char *err, size_t cap)
{
    uint8_t seed[32];
    randombytes_buf(seed, sizeof seed);
    int rc = identity_from_seed(id, seed);
    if (rc != NX_OK) {
        sodium_memzero(seed, sizeof seed);
        return fail(err, cap, rc, 0, "cannot allocate key memory");
    }
    char text[256], seed_hex[65];
    nx_hex_encode(seed_hex, seed, sizeof seed);
    snprintf(text, sizeof text, "%s\nseed=%s\npk=%s\n", KEY_MAGIC, seed_hex, id->id_hex);
    rc = node_file_write_atomic(dir, NODE_KEY_FILE, text, err, cap);
    sodium_memzero(seed, sizeof seed);
    sodium_memzero(seed_hex, sizeof seed_hex);
    sodium_memzero(text, sizeof text);
    if (rc != NX_OK)
        node_identity_free(id);
    return rc;
}

int node_identity_load_or_create(struct node_identity *id, const char *dir, bool *created,
                                 char *err, size_t cap)
{
    memset(id, 0, sizeof *id);
    *created = false;
    char text[SECRET_FILE_MAX];
    int rc = read_secret_file(dir, NODE_KEY_FILE, text, sizeof text, err, cap);
    if (rc == NX_ERR_NOT_FOUND) {
        *created = true;
        return create_key_file(id, dir, err, cap);
    }
    if (rc != NX_OK)
        return rc;
    uint8_t seed[32], stored_pk[32];
    rc = parse_key_file(text, seed, stored_pk);
    sodium_memzero(text, sizeof text);
    if (rc == NX_OK)
        rc = identity_from_seed(id, seed);
    sodium_memzero(seed, sizeof seed);
    if (rc == NX_ERR_NOMEM)
        return fail(err, cap, rc, 0, "cannot allocate key memory");
    if (rc != NX_OK || sodium_memcmp(stored_pk, id->pk, NODE_PK_BYTES) != 0) {
        node_identity_free(id);
        return fail(err, cap, NX_ERR_CORRUPT, 0,
                    "%s/%s is corrupt or truncated (expected '%s', a seed and its public key); "
                    "restore it from a backup, or remove it to give this node a new identity",
                    dir, NODE_KEY_FILE, KEY_MAGIC);
    }
    return NX_OK;
}

void node_identity_free(struct node_identity *id)
{
    if (id->sk)
        sodium_free(id->sk); /* sodium_free wipes before unmapping */
    id->sk = NULL;
}

static int token_valid(const char *t)
{
    if (strncmp(t, NODE_TOKEN_PREFIX, strlen(NODE_TOKEN_PREFIX)) != 0 ||
        strlen(t) != NODE_TOKEN_LEN)
        return 0;
    for (const char *p = t + strlen(NODE_TOKEN_PREFIX); *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return 0;
    return 1;
}

static char *secret_dup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *out = sodium_malloc(n);
    if (out)
        memcpy(out, s, n);
    return out;
}

int node_operator_token_read(char **token, const char *dir, char *err, size_t cap)
{
    char text[SECRET_FILE_MAX];
    int rc = read_secret_file(dir, NODE_TOKEN_FILE, text, sizeof text, err, cap);
    if (rc != NX_OK)
        return rc;
    text[strcspn(text, "\r\n")] = '\0';
    if (!token_valid(text)) {
        sodium_memzero(text, sizeof text);
        return fail(err, cap, NX_ERR_CORRUPT, 0,
                    "%s/%s is corrupt (expected %s followed by %d hex chars)", dir, NODE_TOKEN_FILE,
                    NODE_TOKEN_PREFIX, 2 * NODE_TOKEN_BYTES);
    }
    *token = secret_dup(text);
    sodium_memzero(text, sizeof text);
    return *token ? NX_OK : NX_ERR_NOMEM;
}

int node_operator_token_load_or_create(char **token, const char *dir, char *err, size_t cap)
{
    int rc = node_operator_token_read(token, dir, err, cap);
    if (rc != NX_ERR_NOT_FOUND)
        return rc;
    uint8_t raw[NODE_TOKEN_BYTES];
    char text[NODE_TOKEN_LEN + 2];
    randombytes_buf(raw, sizeof raw);
    memcpy(text, NODE_TOKEN_PREFIX, strlen(NODE_TOKEN_PREFIX));
    nx_hex_encode(text + strlen(NODE_TOKEN_PREFIX), raw, sizeof raw);
    sodium_memzero(raw, sizeof raw);
    strcat(text, "\n");
    rc = node_file_write_atomic(dir, NODE_TOKEN_FILE, text, err, cap);
    text[NODE_TOKEN_LEN] = '\0';
    if (rc == NX_OK) {
        *token = secret_dup(text);
        rc = *token ? NX_OK : NX_ERR_NOMEM;
    }
    sodium_memzero(text, sizeof text);
    return rc;
}

void node_secret_free(char *secret)
{
    if (secret)
        sodium_free(secret);
}

bool node_secret_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    /* Lengths are not secret (all tokens have one length); contents are. */
    return la == lb && sodium_memcmp(a, b, la) == 0;
}

int node_cluster_id_load(uint8_t id[NODE_CLUSTER_ID_BYTES], const char *dir, bool create, char *err,
                         size_t cap)
{
    char path[PATH_MAX], text[128];
    snprintf(path, sizeof path, "%s/%s", dir, NODE_CLUSTER_FILE);
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        if (errno != ENOENT)
            return fail(err, cap, NX_ERR_IO, errno, "cannot open %s", path);
        if (!create)
            return NX_ERR_NOT_FOUND;
        randombytes_buf(id, NODE_CLUSTER_ID_BYTES);
        return node_cluster_id_store(id, dir, err, cap);
    }
    char *line = fgets(text, sizeof text, f);
    fclose(f);
    if (line == NULL)
        text[0] = '\0';
    text[strcspn(text, "\r\n")] = '\0';
    if (nx_hex_decode(id, NODE_CLUSTER_ID_BYTES, text) != NX_OK)
        return fail(err, cap, NX_ERR_CORRUPT, 0, "%s is corrupt (expected 32 hex chars)", path);
    return NX_OK;
}

int node_cluster_id_store(const uint8_t id[NODE_CLUSTER_ID_BYTES], const char *dir, char *err,
                          size_t cap)
{
    char text[2 * NODE_CLUSTER_ID_BYTES + 2];
    nx_hex_encode(text, id, NODE_CLUSTER_ID_BYTES);
    strcat(text, "\n");
    return node_file_write_atomic(dir, NODE_CLUSTER_FILE, text, err, cap);
}

int node_addr_split(const char *addr, char *host, size_t host_cap, uint16_t *port)
{
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || colon == addr || colon[1] == '\0')
        return NX_ERR_INVAL;
    const char *h = addr;
    size_t hlen = (size_t)(colon - addr);
    if (h[0] == '[') {
        if (hlen < 2 || h[hlen - 1] != ']')
            return NX_ERR_INVAL;
        h++;
        hlen -= 2;
    }
    if (hlen == 0 || hlen >= host_cap)
        return NX_ERR_INVAL;
    if (colon[1] < '0' || colon[1] > '9')
        return NX_ERR_INVAL;
    char *end;
    errno = 0;
    unsigned long p = strtoul(colon + 1, &end, 10);
    if (errno || *end != '\0' || p > 65535)
        return NX_ERR_INVAL;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (uint16_t)p;
    return NX_OK;
}
