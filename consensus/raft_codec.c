/*
 * raft_codec.c - the compact binary form of Raft messages and configurations.
 *
 * The host carries these bytes inside signed NCAP envelopes, so the format
 * only has to be compact, bounded and strict. Layout of a message:
 *
 *   u8 version (1) | u8 type | u8 flags | u8 reject
 *   varint from, to, term, log_term, index, commit, hint_index, hint_term, ctx
 *   varint n_entries, then per entry: varint term, u8 type, varint len, bytes
 *     (entry i has index = index + 1 + i)
 *   RAFT_MSG_SNAPSHOT only: varint snap index, snap term, conf (as below), varint len, bytes
 *   u32 CRC-32 (IEEE, little-endian) of everything before it
 *
 * A configuration: u8 n_voters | u8 n_learners | u64 LE ids.
 *
 * The decoder checks every length against the remaining input and the named
 * limits, refuses overlong varints, unknown types, invalid configurations and
 * trailing bytes, and checks the CRC first, which catches every single-byte
 * change. It never asserts on its input.
 */
#include <stdlib.h>
#include <string.h>

#include "consensus/raft.h"

#define CODEC_VERSION 1
#define CRC_BYTES 4
#define VARINT_MAX 10

static uint32_t crc_table[256];
static bool crc_ready;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
    crc_ready = true;
}

static uint32_t crc32_ieee(const uint8_t *p, size_t n)
{
    if (!crc_ready)
        crc_init();
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++)
        c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

/* ---- writer ------------------------------------------------------------- */

struct wbuf {
    uint8_t *p;
    size_t cap;
    size_t len;
    bool overflow;
};

static void put_u8(struct wbuf *w, uint8_t v)
{
    if (w->len + 1 > w->cap) {
        w->overflow = true;
        return;
    }
    w->p[w->len++] = v;
}

static void put_varint(struct wbuf *w, uint64_t v)
{
    while (v >= 0x80) {
        put_u8(w, (uint8_t)(v | 0x80));
        v >>= 7;
    }
    put_u8(w, (uint8_t)v);
}

static void put_bytes(struct wbuf *w, const uint8_t *b, size_t n)
{
    if (n == 0)
        return;
    if (w->len + n > w->cap) {
        w->overflow = true;
        return;
    }
    memcpy(w->p + w->len, b, n);
    w->len += n;
}

static void put_u64le(struct wbuf *w, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        put_u8(w, (uint8_t)(v >> (8 * i)));
}

/* ---- reader ------------------------------------------------------------- */

struct rbuf {
    const uint8_t *p;
    size_t len;
    size_t pos;
    bool bad;
};

static uint8_t get_u8(struct rbuf *r)
{
    if (r->bad || r->pos >= r->len) {
        r->bad = true;
        return 0;
    }
    return r->p[r->pos++];
}

static uint64_t get_varint(struct rbuf *r)
{
    uint64_t v = 0;
    for (int i = 0; i < VARINT_MAX; i++) {
        uint8_t b = get_u8(r);
        if (r->bad)
            return 0;
        if (i == VARINT_MAX - 1 && b > 1) {
            r->bad = true; /* more than 64 bits */
            return 0;
        }
        v |= (uint64_t)(b & 0x7F) << (7 * i);
        if (!(b & 0x80)) {
            if (b == 0 && i > 0)
                r->bad = true; /* non-canonical: trailing zero group */
            return v;
        }
    }
    r->bad = true;
    return 0;
}

static const uint8_t *get_bytes(struct rbuf *r, size_t n)
{
    if (r->bad || n > r->len - r->pos) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *b = r->p + r->pos;
    r->pos += n;
    return b;
}

static uint64_t get_u64le(struct rbuf *r)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)get_u8(r) << (8 * i);
    return v;
}

/* ---- configurations ----------------------------------------------------- */

bool raft_conf_is_voter(const struct raft_conf *c, uint64_t id)
{
    for (uint32_t i = 0; i < c->n_voters; i++)
        if (c->voters[i] == id)
            return true;
    return false;
}

bool raft_conf_is_learner(const struct raft_conf *c, uint64_t id)
{
    for (uint32_t i = 0; i < c->n_learners; i++)
        if (c->learners[i] == id)
            return true;
    return false;
}

size_t raft_conf_encoded_size(const struct raft_conf *c)
{
    return 2 + 8 * ((size_t)c->n_voters + c->n_learners);
}

static void conf_write(struct wbuf *w, const struct raft_conf *c)
{
    put_u8(w, (uint8_t)c->n_voters);
    put_u8(w, (uint8_t)c->n_learners);
    for (uint32_t i = 0; i < c->n_voters; i++)
        put_u64le(w, c->voters[i]);
    for (uint32_t i = 0; i < c->n_learners; i++)
        put_u64le(w, c->learners[i]);
}

static bool conf_valid(const struct raft_conf *c)
{
    if (c->n_voters + c->n_learners > RAFT_MAX_NODES)
        return false;
    for (uint32_t i = 0; i < c->n_voters + c->n_learners; i++) {
        uint64_t id = i < c->n_voters ? c->voters[i] : c->learners[i - c->n_voters];
        if (id == 0)
            return false;
        for (uint32_t j = 0; j < i; j++) {
            uint64_t o = j < c->n_voters ? c->voters[j] : c->learners[j - c->n_voters];
            if (o == id)
                return false;
        }
    }
    return true;
}

static void conf_read(struct rbuf *r, struct raft_conf *c)
{
    memset(c, 0, sizeof *c);
    uint32_t nv = get_u8(r), nl = get_u8(r);
    if (r->bad || nv + nl > RAFT_MAX_NODES) {
        r->bad = true;
        return;
    }
    c->n_voters = nv;
    c->n_learners = nl;
    for (uint32_t i = 0; i < nv; i++)
        c->voters[i] = get_u64le(r);
    for (uint32_t i = 0; i < nl; i++)
        c->learners[i] = get_u64le(r);
    if (!r->bad && !conf_valid(c))
        r->bad = true;
}

long raft_conf_encode(const struct raft_conf *c, uint8_t *out, size_t cap)
{
    if (!conf_valid(c))
        return NX_ERR_INVAL;
    struct wbuf w = {out, cap, 0, false};
    conf_write(&w, c);
    return w.overflow ? NX_ERR_TOO_BIG : (long)w.len;
}

int raft_conf_decode(const uint8_t *buf, size_t len, struct raft_conf *out)
{
    struct rbuf r = {buf, len, 0, false};
    conf_read(&r, out);
    if (r.bad || r.pos != len)
        return NX_ERR_DECODE;
    return NX_OK;
}

/* ---- messages ----------------------------------------------------------- */

const char *raft_msg_type_name(int type)
{
    static const char *const names[] = {
        "none",          "append",    "append_resp",    "vote",     "vote_resp",   "pre_vote",
        "pre_vote_resp", "heartbeat", "heartbeat_resp", "snapshot", "timeout_now",
    };
    if (type < 0 || type > RAFT_MSG_TYPE_MAX)
        return "unknown";
    return names[type];
}

size_t raft_msg_encoded_size(const struct raft_msg *m)
{
    size_t n = 4 + 10 * VARINT_MAX + VARINT_MAX + CRC_BYTES;
    for (uint32_t i = 0; i < m->n_entries; i++)
        n += 2 * VARINT_MAX + 1 + m->entries[i].len;
    if (m->type == RAFT_MSG_SNAPSHOT)
        n += 3 * VARINT_MAX + raft_conf_encoded_size(&m->snapshot.conf) + m->snapshot.len;
    return n;
}

long raft_msg_encode(const struct raft_msg *m, uint8_t *out, size_t cap)
{
    if (m->type < 1 || m->type > RAFT_MSG_TYPE_MAX || m->n_entries > RAFT_MAX_MSG_ENTRIES)
        return NX_ERR_INVAL;
    struct wbuf w = {out, cap, 0, false};
    put_u8(&w, CODEC_VERSION);
    put_u8(&w, m->type);
    put_u8(&w, m->flags);
    put_u8(&w, m->reject ? 1 : 0);
    put_varint(&w, m->from);
    put_varint(&w, m->to);
    put_varint(&w, m->term);
    put_varint(&w, m->log_term);
    put_varint(&w, m->index);
    put_varint(&w, m->commit);
    put_varint(&w, m->hint_index);
    put_varint(&w, m->hint_term);
    put_varint(&w, m->ctx);
    put_varint(&w, m->n_entries);
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const struct raft_entry *e = &m->entries[i];
        if (e->len > RAFT_MAX_ENTRY_BYTES_LIMIT || e->type > RAFT_ENTRY_CONF)
            return NX_ERR_INVAL;
        put_varint(&w, e->term);
        put_u8(&w, e->type);
        put_varint(&w, e->len);
        put_bytes(&w, e->data, e->len);
    }
    if (m->type == RAFT_MSG_SNAPSHOT) {
        if (m->snapshot.len > RAFT_MAX_SNAPSHOT_BYTES || !conf_valid(&m->snapshot.conf))
            return NX_ERR_INVAL;
        put_varint(&w, m->snapshot.index);
        put_varint(&w, m->snapshot.term);
        conf_write(&w, &m->snapshot.conf);
        put_varint(&w, m->snapshot.len);
        put_bytes(&w, m->snapshot.data, m->snapshot.len);
    }
    if (w.overflow || w.len + CRC_BYTES > cap || w.len + CRC_BYTES > RAFT_MAX_MSG_BYTES)
        return NX_ERR_TOO_BIG;
    uint32_t crc = crc32_ieee(out, w.len);
    for (int i = 0; i < CRC_BYTES; i++)
        out[w.len++] = (uint8_t)(crc >> (8 * i));
    return (long)w.len;
}

void raft_msg_clear(struct raft_msg *m)
{
    free(m->entries);
    memset(m, 0, sizeof *m);
}

int raft_msg_decode(const uint8_t *buf, size_t len, struct raft_msg *out)
{
    memset(out, 0, sizeof *out);
    if (len < 4 + CRC_BYTES || len > RAFT_MAX_MSG_BYTES)
        return NX_ERR_DECODE;
    size_t body = len - CRC_BYTES;
    uint32_t want = 0;
    for (int i = 0; i < CRC_BYTES; i++)
        want |= (uint32_t)buf[body + i] << (8 * i);
    if (crc32_ieee(buf, body) != want)
        return NX_ERR_DECODE;

    struct rbuf r = {buf, body, 0, false};
    if (get_u8(&r) != CODEC_VERSION)
        return NX_ERR_DECODE;
    out->type = get_u8(&r);
    out->flags = get_u8(&r);
    uint8_t rej = get_u8(&r);
    if (out->type < 1 || out->type > RAFT_MSG_TYPE_MAX || rej > 1 ||
        (out->flags & ~RAFT_MSG_FLAG_TRANSFER))
        goto err;
    out->reject = rej == 1;
    out->from = get_varint(&r);
    out->to = get_varint(&r);
    out->term = get_varint(&r);
    out->log_term = get_varint(&r);
    out->index = get_varint(&r);
    out->commit = get_varint(&r);
    out->hint_index = get_varint(&r);
    out->hint_term = get_varint(&r);
    out->ctx = get_varint(&r);
    uint64_t n = get_varint(&r);
    if (r.bad || n > RAFT_MAX_MSG_ENTRIES || out->from == 0)
        goto err;
    if (n > 0) {
        if (out->type != RAFT_MSG_APPEND || out->index > UINT64_MAX - n - 1)
            goto err;
        out->entries = calloc((size_t)n, sizeof *out->entries);
        if (!out->entries) {
            memset(out, 0, sizeof *out);
            return NX_ERR_NOMEM;
        }
        out->n_entries = (uint32_t)n;
        for (uint32_t i = 0; i < n; i++) {
            struct raft_entry *e = &out->entries[i];
            e->index = out->index + 1 + i;
            e->term = get_varint(&r);
            e->type = get_u8(&r);
            uint64_t elen = get_varint(&r);
            if (r.bad || e->type > RAFT_ENTRY_CONF || elen > RAFT_MAX_ENTRY_BYTES_LIMIT ||
                e->term == 0)
                goto err;
            e->len = (uint32_t)elen;
            e->data = get_bytes(&r, e->len);
            if (r.bad)
                goto err;
            struct raft_conf tmp;
            if (e->type == RAFT_ENTRY_CONF && raft_conf_decode(e->data, e->len, &tmp) != NX_OK)
                goto err;
        }
    }
    if (out->type == RAFT_MSG_SNAPSHOT) {
        out->snapshot.index = get_varint(&r);
        out->snapshot.term = get_varint(&r);
        conf_read(&r, &out->snapshot.conf);
        uint64_t slen = get_varint(&r);
        if (r.bad || slen > RAFT_MAX_SNAPSHOT_BYTES)
            goto err;
        out->snapshot.len = (uint32_t)slen;
        out->snapshot.data = get_bytes(&r, out->snapshot.len);
    }
    if (r.bad || r.pos != body)
        goto err;
    return NX_OK;
err:
    raft_msg_clear(out);
    return NX_ERR_DECODE;
}
