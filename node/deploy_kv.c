/*
 * deploy_kv.c - the KV entry of a replica, its log ring and line splitting (deploy_kv.h).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deploy_kv.h"

#define INDEX_DIGITS_MAX 5

bool deploy_key_parse(const char *key, size_t klen, char name[DEPLOY_NAME_MAX + 1],
                      uint32_t *replica)
{
    size_t pl = strlen(DEPLOY_KV_PREFIX);
    if (klen <= pl || klen >= DEPLOY_KEY_MAX || memcmp(key, DEPLOY_KV_PREFIX, pl) != 0)
        return false;
    const char *n = key + pl, *end = key + klen;
    const char *slash = memchr(n, '/', (size_t)(end - n));
    if (slash == NULL || slash == n || (size_t)(slash - n) > DEPLOY_NAME_MAX || slash + 1 == end ||
        end - (slash + 1) > INDEX_DIGITS_MAX)
        return false;
    uint32_t r = 0;
    for (const char *p = slash + 1; p < end; p++) {
        if (*p < '0' || *p > '9')
            return false;
        r = r * 10 + (uint32_t)(*p - '0');
    }
    if (r >= DEPLOY_REPLICAS_MAX || (slash[1] == '0' && end - slash > 2)) /* no leading zeros */
        return false;
    memcpy(name, n, (size_t)(slash - n));
    name[slash - n] = '\0';
    *replica = r;
    return true;
}

int deploy_key_format(char out[DEPLOY_KEY_MAX], const char *name, uint32_t replica)
{
    size_t n = strlen(name);
    if (n == 0 || n > DEPLOY_NAME_MAX || strchr(name, '/') || replica >= DEPLOY_REPLICAS_MAX)
        return NX_ERR_INVAL;
    snprintf(out, DEPLOY_KEY_MAX, "%s%s/%u", DEPLOY_KV_PREFIX, name, replica);
    return NX_OK;
}

static bool copy_str(char *out, size_t cap, json_t *v, bool required)
{
    const char *s = json_string_value(v);
    if (s == NULL)
        return !required && v == NULL;
    if (strlen(s) >= cap)
        return false;
    memcpy(out, s, strlen(s) + 1);
    return true;
}

bool deploy_entry_parse(const char *key, size_t klen, const char *val, size_t vlen,
                        struct deploy_entry *e)
{
    memset(e, 0, sizeof *e);
    if (!deploy_key_parse(key, klen, e->name, &e->replica))
        return false;
    json_t *j = json_loadb(val, vlen, 0, NULL);
    char node[NODE_ID_HEX_LEN + 1];
    json_t *since = json_object_get(j, "since_ms");
    bool ok =
        json_is_object(j) && copy_str(node, sizeof node, json_object_get(j, "node"), true) &&
        copy_str(e->agent, sizeof e->agent, json_object_get(j, "agent"), true) &&
        copy_str(e->version, sizeof e->version, json_object_get(j, "version"), true) &&
        copy_str(e->bundle_hash, sizeof e->bundle_hash, json_object_get(j, "bundle_hash"), true) &&
        copy_str(e->why, sizeof e->why, json_object_get(j, "why"), false) &&
        (since == NULL || (json_is_integer(since) && json_integer_value(since) >= 0));
    if (ok && node[0]) {
        ok = strlen(node) == NODE_ID_HEX_LEN &&
             nx_hex_decode(e->node, NODE_PK_BYTES, node) == NX_OK &&
             strlen(e->bundle_hash) == BUNDLE_HASH_HEX_LEN;
        e->assigned = true;
    }
    if (ok)
        e->since_ms = since ? (uint64_t)json_integer_value(since) : 0;
    json_decref(j);
    if (!ok)
        memset(e, 0, sizeof *e);
    return ok;
}

char *deploy_entry_encode(const struct deploy_entry *e)
{
    char node[NODE_ID_HEX_LEN + 1] = "";
    if (e->assigned)
        nx_hex_encode(node, e->node, NODE_PK_BYTES);
    json_t *v =
        json_pack("{s:s,s:s,s:s,s:s,s:I}", "node", node, "agent", e->agent, "version", e->version,
                  "bundle_hash", e->bundle_hash, "since_ms", (json_int_t)e->since_ms);
    if (v && e->why[0])
        json_object_set_new(v, "why", json_string(e->why));
    char *txt = v ? json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(v);
    return txt;
}

void deploy_log_push(struct deploy_log *l, uint64_t ts_ms, const char *text, size_t len)
{
    struct deploy_log_line *line;
    if (l->count == DEPLOY_LOG_LINES) { /* full: the oldest makes room */
        line = &l->lines[l->head];
        l->head = (l->head + 1) % DEPLOY_LOG_LINES;
    } else {
        line = &l->lines[(l->head + l->count) % DEPLOY_LOG_LINES];
        l->count++;
    }
    if (len >= DEPLOY_LOG_LINE_MAX)
        len = DEPLOY_LOG_LINE_MAX - 1;
    memcpy(line->text, text, len);
    line->text[len] = '\0';
    line->ts_ms = ts_ms;
    l->total++;
}

const struct deploy_log_line *deploy_log_get(const struct deploy_log *l, size_t k)
{
    return k < l->count ? &l->lines[(l->head + k) % DEPLOY_LOG_LINES] : NULL;
}

static size_t put(char *out, size_t cap, const char *s, size_t n)
{
    if (cap == 0)
        return 0;
    if (n >= cap)
        n = cap - 1;
    memcpy(out, s, n);
    out[n] = '\0';
    return n;
}

size_t deploy_log_text(const char *line, size_t len, char *out, size_t cap)
{
    json_t *j = json_loadb(line, len, 0, NULL);
    json_t *lg = json_object_get(j, "log");
    size_t n;
    if (json_is_string(lg)) {
        n = put(out, cap, json_string_value(lg), json_string_length(lg));
    } else if (lg) {
        char *t = json_dumps(lg, JSON_COMPACT | JSON_ENCODE_ANY);
        n = t ? put(out, cap, t, strlen(t)) : put(out, cap, line, len);
        free(t);
    } else {
        n = put(out, cap, line, len);
    }
    json_decref(j);
    return n;
}

void deploy_lines_split(char *buf, size_t *len, size_t cap, deploy_line_fn fn, void *arg)
{
    size_t start = 0;
    for (size_t i = 0; i < *len; i++)
        if (buf[i] == '\n') {
            fn(arg, buf + start, i - start);
            start = i + 1;
        }
    if (start == 0 && *len + 1 >= cap) { /* one line longer than the buffer: cut */
        fn(arg, buf, *len);
        start = *len;
    }
    memmove(buf, buf + start, *len - start);
    *len -= start;
}
