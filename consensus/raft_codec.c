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
 *   RAFT_MSG_SNAPSHOT only: varint snap index, snap term, conf (as below), varint total,
 *     varint chunk size, varint offset, varint len, bytes (one chunk of the snapshot)
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

/* CRC-32 (IEEE 802.3, reflected 0xEDB88320) lookup table, precomputed: no lazy init, no races. */
static const uint32_t crc_table[256] = {
    0x00000000u, 0x77073096u, 0xee0e612cu, 0x990951bau, 0x076dc419u, 0x706af48fu, 0xe963a535u,
    0x9e6495a3u, 0x0edb8832u, 0x79dcb8a4u, 0xe0d5e91eu, 0x97d2d988u, 0x09b64c2bu, 0x7eb17cbdu,
    0xe7b82d07u, 0x90bf1d91u, 0x1db71064u, 0x6ab020f2u, 0xf3b97148u, 0x84be41deu, 0x1adad47du,
    0x6ddde4ebu, 0xf4d4b551u, 0x83d385c7u, 0x136c9856u, 0x646ba8c0u, 0xfd62f97au, 0x8a65c9ecu,
    0x14015c4fu, 0x63066cd9u, 0xfa0f3d63u, 0x8d080df5u, 0x3b6e20c8u, 0x4c69105eu, 0xd56041e4u,
    0xa2677172u, 0x3c03e4d1u, 0x4b04d447u, 0xd20d85fdu, 0xa50ab56bu, 0x35b5a8fau, 0x42b2986cu,
    0xdbbbc9d6u, 0xacbcf940u, 0x32d86ce3u, 0x45df5c75u, 0xdcd60dcfu, 0xabd13d59u, 0x26d930acu,
    0x51de003au, 0xc8d75180u, 0xbfd06116u, 0x21b4f4b5u, 0x56b3c423u, 0xcfba9599u, 0xb8bda50fu,
    0x2802b89eu, 0x5f058808u, 0xc60cd9b2u, 0xb10be924u, 0x2f6f7c87u, 0x58684c11u, 0xc1611dabu,
    0xb6662d3du, 0x76dc4190u, 0x01db7106u, 0x98d220bcu, 0xefd5102au, 0x71b18589u, 0x06b6b51fu,
    0x9fbfe4a5u, 0xe8b8d433u, 0x7807c9a2u, 0x0f00f934u, 0x9609a88eu, 0xe10e9818u, 0x7f6a0dbbu,
    0x086d3d2du, 0x91646c97u, 0xe6635c01u, 0x6b6b51f4u, 0x1c6c6162u, 0x856530d8u, 0xf262004eu,
    0x6c0695edu, 0x1b01a57bu, 0x8208f4c1u, 0xf50fc457u, 0x65b0d9c6u, 0x12b7e950u, 0x8bbeb8eau,
    0xfcb9887cu, 0x62dd1ddfu, 0x15da2d49u, 0x8cd37cf3u, 0xfbd44c65u, 0x4db26158u, 0x3ab551ceu,
    0xa3bc0074u, 0xd4bb30e2u, 0x4adfa541u, 0x3dd895d7u, 0xa4d1c46du, 0xd3d6f4fbu, 0x4369e96au,
    0x346ed9fcu, 0xad678846u, 0xda60b8d0u, 0x44042d73u, 0x33031de5u, 0xaa0a4c5fu, 0xdd0d7cc9u,
    0x5005713cu, 0x270241aau, 0xbe0b1010u, 0xc90c2086u, 0x5768b525u, 0x206f85b3u, 0xb966d409u,
    0xce61e49fu, 0x5edef90eu, 0x29d9c998u, 0xb0d09822u, 0xc7d7a8b4u, 0x59b33d17u, 0x2eb40d81u,
    0xb7bd5c3bu, 0xc0ba6cadu, 0xedb88320u, 0x9abfb3b6u, 0x03b6e20cu, 0x74b1d29au, 0xead54739u,
    0x9dd277afu, 0x04db2615u, 0x73dc1683u, 0xe3630b12u, 0x94643b84u, 0x0d6d6a3eu, 0x7a6a5aa8u,
    0xe40ecf0bu, 0x9309ff9du, 0x0a00ae27u, 0x7d079eb1u, 0xf00f9344u, 0x8708a3d2u, 0x1e01f268u,
    0x6906c2feu, 0xf762575du, 0x806567cbu, 0x196c3671u, 0x6e6b06e7u, 0xfed41b76u, 0x89d32be0u,
    0x10da7a5au, 0x67dd4accu, 0xf9b9df6fu, 0x8ebeeff9u, 0x17b7be43u, 0x60b08ed5u, 0xd6d6a3e8u,
    0xa1d1937eu, 0x38d8c2c4u, 0x4fdff252u, 0xd1bb67f1u, 0xa6bc5767u, 0x3fb506ddu, 0x48b2364bu,
    0xd80d2bdau, 0xaf0a1b4cu, 0x36034af6u, 0x41047a60u, 0xdf60efc3u, 0xa867df55u, 0x316e8eefu,
    0x4669be79u, 0xcb61b38cu, 0xbc66831au, 0x256fd2a0u, 0x5268e236u, 0xcc0c7795u, 0xbb0b4703u,
    0x220216b9u, 0x5505262fu, 0xc5ba3bbeu, 0xb2bd0b28u, 0x2bb45a92u, 0x5cb36a04u, 0xc2d7ffa7u,
    0xb5d0cf31u, 0x2cd99e8bu, 0x5bdeae1du, 0x9b64c2b0u, 0xec63f226u, 0x756aa39cu, 0x026d930au,
    0x9c0906a9u, 0xeb0e363fu, 0x72076785u, 0x05005713u, 0x95bf4a82u, 0xe2b87a14u, 0x7bb12baeu,
    0x0cb61b38u, 0x92d28e9bu, 0xe5d5be0du, 0x7cdcefb7u, 0x0bdbdf21u, 0x86d3d2d4u, 0xf1d4e242u,
    0x68ddb3f8u, 0x1fda836eu, 0x81be16cdu, 0xf6b9265bu, 0x6fb077e1u, 0x18b74777u, 0x88085ae6u,
    0xff0f6a70u, 0x66063bcau, 0x11010b5cu, 0x8f659effu, 0xf862ae69u, 0x616bffd3u, 0x166ccf45u,
    0xa00ae278u, 0xd70dd2eeu, 0x4e048354u, 0x3903b3c2u, 0xa7672661u, 0xd06016f7u, 0x4969474du,
    0x3e6e77dbu, 0xaed16a4au, 0xd9d65adcu, 0x40df0b66u, 0x37d83bf0u, 0xa9bcae53u, 0xdebb9ec5u,
    0x47b2cf7fu, 0x30b5ffe9u, 0xbdbdf21cu, 0xcabac28au, 0x53b39330u, 0x24b4a3a6u, 0xbad03605u,
    0xcdd70693u, 0x54de5729u, 0x23d967bfu, 0xb3667a2eu, 0xc4614ab8u, 0x5d681b02u, 0x2a6f2b94u,
    0xb40bbe37u, 0xc30c8ea1u, 0x5a05df1bu, 0x2d02ef8du,
};

static uint32_t crc32_ieee(const uint8_t *p, size_t n)
{
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

/* A chunk lies on the chunk grid, inside the snapshot, and is full unless it is the last. */
static bool snapshot_chunk_valid(const struct raft_msg *m)
{
    uint64_t total = m->snap_total, chunk = m->snap_chunk, off = m->snap_offset;
    if (total > RAFT_MAX_SNAPSHOT_BYTES || chunk == 0 || off % chunk != 0)
        return false;
    if (total == 0)
        return off == 0 && m->snapshot.len == 0;
    if (off >= total)
        return false;
    uint64_t want = total - off < chunk ? total - off : chunk;
    return m->snapshot.len == want;
}

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
        n += 6 * VARINT_MAX + raft_conf_encoded_size(&m->snapshot.conf) + m->snapshot.len;
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
        if (!snapshot_chunk_valid(m) || !conf_valid(&m->snapshot.conf))
            return NX_ERR_INVAL;
        put_varint(&w, m->snapshot.index);
        put_varint(&w, m->snapshot.term);
        conf_write(&w, &m->snapshot.conf);
        put_varint(&w, m->snap_total);
        put_varint(&w, m->snap_chunk);
        put_varint(&w, m->snap_offset);
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
        uint64_t total = get_varint(&r), chunk = get_varint(&r), off = get_varint(&r);
        uint64_t slen = get_varint(&r);
        if (r.bad || total > RAFT_MAX_SNAPSHOT_BYTES || chunk > RAFT_MAX_SNAPSHOT_BYTES ||
            off > RAFT_MAX_SNAPSHOT_BYTES || slen > RAFT_MAX_SNAPSHOT_BYTES)
            goto err;
        out->snap_total = (uint32_t)total;
        out->snap_chunk = (uint32_t)chunk;
        out->snap_offset = (uint32_t)off;
        out->snapshot.len = (uint32_t)slen;
        if (!snapshot_chunk_valid(out))
            goto err;
        out->snapshot.data = get_bytes(&r, out->snapshot.len);
    }
    if (r.bad || r.pos != body)
        goto err;
    return NX_OK;
err:
    raft_msg_clear(out);
    return NX_ERR_DECODE;
}
