/*
 * trust_file.c - the file-backed trust set (see trust.h for the format).
 *
 * The set is a sorted array of 32-byte keys, searched with bsearch: lookups
 * run for every received message, while loads are rare. A load parses into a
 * fresh array and swaps it in only when the whole file is good, so a bad edit
 * never leaves the node trusting half a file.
 */
#include "node/trust.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Largest trust file read; far above MAX_KEYS lines of key plus comment. */
#define TRUST_FILE_MAX_BYTES (4u << 20)

struct node_trust_file {
    uint8_t (*keys)[NODE_TRUST_PK_BYTES]; /* owned; sorted, distinct */
    size_t count;
    char *path; /* owned; last successfully loaded file, or NULL */
};

bool node_trust_check(const struct node_trust *t, const uint8_t ed25519_pk[NODE_TRUST_PK_BYTES])
{
    return t != NULL && t->is_trusted != NULL && t->is_trusted(t->ctx, ed25519_pk);
}

static int key_cmp(const void *a, const void *b)
{
    return memcmp(a, b, NODE_TRUST_PK_BYTES);
}

NX_PRINTF(3, 4) static void set_err(char *err, size_t err_len, const char *fmt, ...)
{
    if (err == NULL || err_len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

int node_trust_file_new(struct node_trust_file **out)
{
    struct node_trust_file *tf = calloc(1, sizeof *tf);
    if (tf == NULL)
        return NX_ERR_NOMEM;
    *out = tf;
    return NX_OK;
}

void node_trust_file_free(struct node_trust_file *tf)
{
    if (tf == NULL)
        return;
    free(tf->keys);
    free(tf->path);
    free(tf);
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Parses one line (without its newline) into keys[*n]; 0 for a key or a blank line. */
static int parse_line(const char *line, size_t len, uint8_t (*keys)[NODE_TRUST_PK_BYTES], size_t *n,
                      const char *name, unsigned lineno, char *err, size_t err_len)
{
    if (len > NODE_TRUST_FILE_MAX_LINE) {
        set_err(err, err_len, "%s:%u: line longer than %d characters", name, lineno,
                NODE_TRUST_FILE_MAX_LINE);
        return NX_ERR_TOO_BIG;
    }
    const char *hash = memchr(line, '#', len);
    if (hash != NULL)
        len = (size_t)(hash - line);
    while (len > 0 && is_space(line[0])) {
        line++;
        len--;
    }
    while (len > 0 && is_space(line[len - 1]))
        len--;
    if (len == 0)
        return NX_OK;
    if (len != 2 * NODE_TRUST_PK_BYTES) {
        set_err(err, err_len, "%s:%u: expected %d hex characters, got %zu", name, lineno,
                2 * NODE_TRUST_PK_BYTES, len);
        return NX_ERR_DECODE;
    }
    if (*n >= NODE_TRUST_FILE_MAX_KEYS) {
        set_err(err, err_len, "%s:%u: more than %d keys", name, lineno, NODE_TRUST_FILE_MAX_KEYS);
        return NX_ERR_TOO_BIG;
    }
    char hex[2 * NODE_TRUST_PK_BYTES + 1];
    memcpy(hex, line, len);
    hex[len] = '\0';
    if (nx_hex_decode(keys[*n], NODE_TRUST_PK_BYTES, hex) != NX_OK) {
        set_err(err, err_len, "%s:%u: not a hex key", name, lineno);
        return NX_ERR_DECODE;
    }
    (*n)++;
    return NX_OK;
}

int node_trust_file_parse(struct node_trust_file *tf, const char *name, const char *text,
                          size_t len, char *err, size_t err_len)
{
    NX_ASSERT(tf != NULL && (text != NULL || len == 0));
    if (name == NULL)
        name = "<memory>";
    uint8_t(*keys)[NODE_TRUST_PK_BYTES] = malloc(NODE_TRUST_FILE_MAX_KEYS * sizeof *keys);
    if (keys == NULL)
        return NX_ERR_NOMEM;
    size_t n = 0;
    unsigned lineno = 0;
    size_t pos = 0;
    while (pos < len) {
        lineno++;
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t line_len = nl != NULL ? (size_t)(nl - (text + pos)) : len - pos;
        int rc = parse_line(text + pos, line_len, keys, &n, name, lineno, err, err_len);
        if (rc != NX_OK) {
            free(keys);
            return rc;
        }
        pos += line_len + 1;
    }
    qsort(keys, n, sizeof *keys, key_cmp);
    size_t distinct = 0;
    for (size_t i = 0; i < n; i++) {
        if (distinct == 0 || memcmp(keys[distinct - 1], keys[i], NODE_TRUST_PK_BYTES) != 0)
            memmove(keys[distinct++], keys[i], NODE_TRUST_PK_BYTES);
    }
    free(tf->keys);
    tf->keys = keys;
    tf->count = distinct;
    return NX_OK;
}

/* Reads the whole file (bounded) into a malloc'd buffer owned by the caller. */
static int read_file(const char *path, char **out, size_t *out_len, char *err, size_t err_len)
{
    int rc = NX_OK;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        set_err(err, err_len, "%s: %s", path, strerror(errno));
        return NX_ERR_IO;
    }
    char *buf = malloc(TRUST_FILE_MAX_BYTES + 1);
    if (buf == NULL) {
        rc = NX_ERR_NOMEM;
        goto err_close;
    }
    size_t len = fread(buf, 1, TRUST_FILE_MAX_BYTES + 1, f);
    if (ferror(f)) {
        set_err(err, err_len, "%s: read failed: %s", path, strerror(errno));
        rc = NX_ERR_IO;
        goto err_free;
    }
    if (len > TRUST_FILE_MAX_BYTES) {
        set_err(err, err_len, "%s: larger than %u bytes", path, TRUST_FILE_MAX_BYTES);
        rc = NX_ERR_TOO_BIG;
        goto err_free;
    }
    fclose(f);
    *out = buf;
    *out_len = len;
    return NX_OK;

err_free:
    free(buf);
err_close:
    fclose(f);
    return rc;
}

int node_trust_file_load(struct node_trust_file *tf, const char *path, char *err, size_t err_len)
{
    NX_ASSERT(tf != NULL && path != NULL);
    char *path_copy = strdup(path);
    if (path_copy == NULL)
        return NX_ERR_NOMEM;
    char *text = NULL;
    size_t len = 0;
    int rc = read_file(path, &text, &len, err, err_len);
    if (rc == NX_OK)
        rc = node_trust_file_parse(tf, path, text, len, err, err_len);
    free(text);
    if (rc != NX_OK) {
        NX_WARN("trust_load_failed", "path=%s err=%s", path, nx_strerror(rc));
        free(path_copy);
        return rc;
    }
    free(tf->path);
    tf->path = path_copy;
    NX_INFO("trust_loaded", "path=%s keys=%zu", path, tf->count);
    return NX_OK;
}

int node_trust_file_reload(struct node_trust_file *tf, char *err, size_t err_len)
{
    NX_ASSERT(tf != NULL);
    if (tf->path == NULL) {
        set_err(err, err_len, "no trust file loaded yet");
        return NX_ERR_STATE;
    }
    char *path = strdup(tf->path); /* load replaces tf->path */
    if (path == NULL)
        return NX_ERR_NOMEM;
    int rc = node_trust_file_load(tf, path, err, err_len);
    free(path);
    return rc;
}

static size_t lower_bound(const struct node_trust_file *tf, const uint8_t pk[NODE_TRUST_PK_BYTES])
{
    size_t lo = 0, hi = tf->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (memcmp(tf->keys[mid], pk, NODE_TRUST_PK_BYTES) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

bool node_trust_file_contains(const struct node_trust_file *tf,
                              const uint8_t ed25519_pk[NODE_TRUST_PK_BYTES])
{
    if (tf == NULL || tf->count == 0)
        return false;
    size_t i = lower_bound(tf, ed25519_pk);
    return i < tf->count && memcmp(tf->keys[i], ed25519_pk, NODE_TRUST_PK_BYTES) == 0;
}

int node_trust_file_add(struct node_trust_file *tf, const uint8_t ed25519_pk[NODE_TRUST_PK_BYTES])
{
    NX_ASSERT(tf != NULL);
    size_t i = lower_bound(tf, ed25519_pk);
    if (i < tf->count && memcmp(tf->keys[i], ed25519_pk, NODE_TRUST_PK_BYTES) == 0)
        return NX_OK;
    if (tf->count >= NODE_TRUST_FILE_MAX_KEYS)
        return NX_ERR_FULL;
    uint8_t(*keys)[NODE_TRUST_PK_BYTES] = realloc(tf->keys, (tf->count + 1) * sizeof *keys);
    if (keys == NULL)
        return NX_ERR_NOMEM;
    memmove(keys[i + 1], keys[i], (tf->count - i) * sizeof *keys);
    memcpy(keys[i], ed25519_pk, NODE_TRUST_PK_BYTES);
    tf->keys = keys;
    tf->count++;
    return NX_OK;
}

int node_trust_file_remove(struct node_trust_file *tf,
                           const uint8_t ed25519_pk[NODE_TRUST_PK_BYTES])
{
    NX_ASSERT(tf != NULL);
    size_t i = lower_bound(tf, ed25519_pk);
    if (i >= tf->count || memcmp(tf->keys[i], ed25519_pk, NODE_TRUST_PK_BYTES) != 0)
        return NX_ERR_NOT_FOUND;
    memmove(tf->keys[i], tf->keys[i + 1], (tf->count - i - 1) * sizeof *tf->keys);
    tf->count--;
    return NX_OK;
}

size_t node_trust_file_count(const struct node_trust_file *tf)
{
    return tf == NULL ? 0 : tf->count;
}

static bool file_is_trusted(void *ctx, const uint8_t ed25519_pk[NODE_TRUST_PK_BYTES])
{
    return node_trust_file_contains(ctx, ed25519_pk);
}

struct node_trust node_trust_file_iface(struct node_trust_file *tf)
{
    return (struct node_trust){.is_trusted = file_is_trusted, .ctx = tf};
}
