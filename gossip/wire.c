/*
 * wire.c - encoding and validating decoding of gossip messages and metadata.
 *
 * The decoder is the only code that sees untrusted bytes. It is written as a
 * cursor that checks every length against what remains, rejects unknown
 * types and kinds, out-of-range enums, strings with NUL bytes or over their
 * limit, and trailing bytes. gw_parse validates a whole message before the
 * core applies anything, so a bad message has no partial effect.
 */
#include "gossip/wire.h"

#include <string.h>

/* ---- writer ------------------------------------------------------------- */

static bool w_room(struct gw_writer *w, size_t n)
{
    if (w->overflow || n > w->cap - w->len) {
        w->overflow = true;
        return false;
    }
    return true;
}

void gw_put_u8(struct gw_writer *w, uint8_t v)
{
    if (w_room(w, 1))
        w->buf[w->len++] = v;
}

void gw_put_u16(struct gw_writer *w, uint16_t v)
{
    if (!w_room(w, 2))
        return;
    w->buf[w->len++] = (uint8_t)v;
    w->buf[w->len++] = (uint8_t)(v >> 8);
}

void gw_put_u32(struct gw_writer *w, uint32_t v)
{
    if (!w_room(w, 4))
        return;
    for (int i = 0; i < 4; i++)
        w->buf[w->len++] = (uint8_t)(v >> (8 * i));
}

void gw_put_u64(struct gw_writer *w, uint64_t v)
{
    if (!w_room(w, 8))
        return;
    for (int i = 0; i < 8; i++)
        w->buf[w->len++] = (uint8_t)(v >> (8 * i));
}

void gw_put_bytes(struct gw_writer *w, const void *p, size_t n)
{
    if (!w_room(w, n))
        return;
    if (n)
        memcpy(w->buf + w->len, p, n);
    w->len += n;
}

void gw_patch_u16(struct gw_writer *w, size_t at, uint16_t v)
{
    if (w->overflow || at + 2 > w->len)
        return;
    w->buf[at] = (uint8_t)v;
    w->buf[at + 1] = (uint8_t)(v >> 8);
}

/* ---- reader ------------------------------------------------------------- */

const uint8_t *gw_get_bytes(struct gw_reader *r, size_t n)
{
    if (r->err || n > r->len - r->pos) {
        r->err = true;
        return NULL;
    }
    const uint8_t *p = r->buf + r->pos;
    r->pos += n;
    return p;
}

static uint64_t get_le(struct gw_reader *r, size_t n)
{
    const uint8_t *p = gw_get_bytes(r, n);
    uint64_t v = 0;
    if (!p)
        return 0;
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

uint8_t gw_get_u8(struct gw_reader *r)
{
    return (uint8_t)get_le(r, 1);
}
uint16_t gw_get_u16(struct gw_reader *r)
{
    return (uint16_t)get_le(r, 2);
}
uint32_t gw_get_u32(struct gw_reader *r)
{
    return (uint32_t)get_le(r, 4);
}
uint64_t gw_get_u64(struct gw_reader *r)
{
    return get_le(r, 8);
}

/* ---- metadata ------------------------------------------------------------ */

static void put_str(struct gw_writer *w, const char *s, size_t max, bool *bad)
{
    size_t n = strnlen(s, max + 1);
    if (n > max) {
        *bad = true;
        return;
    }
    gw_put_u8(w, (uint8_t)n);
    gw_put_bytes(w, s, n);
}

int gossip_meta_encode(const struct gossip_meta *meta, uint8_t *out, size_t cap)
{
    struct gw_writer w = {.buf = out, .cap = cap};
    bool bad = meta->raft_role >= GOSSIP_RAFT__COUNT || meta->gpu_mem_count > GOSSIP_GPUS_MAX ||
               meta->label_count > GOSSIP_LABELS_MAX || meta->gpu_count > UINT16_MAX;
    if (bad)
        return NX_ERR_INVAL;
    put_str(&w, meta->addr, GOSSIP_ADDR_MAX, &bad);
    put_str(&w, meta->version, GOSSIP_VERSION_MAX, &bad);
    gw_put_u8(&w, (uint8_t)meta->raft_role);
    gw_put_u32(&w, meta->cpu_free_millicores);
    gw_put_u32(&w, meta->cpu_total_millicores);
    gw_put_u64(&w, meta->mem_free_bytes);
    gw_put_u64(&w, meta->mem_total_bytes);
    gw_put_u16(&w, (uint16_t)meta->gpu_count);
    gw_put_u8(&w, (uint8_t)meta->gpu_mem_count);
    for (uint32_t i = 0; i < meta->gpu_mem_count; i++)
        gw_put_u64(&w, meta->gpu_mem_bytes[i]);
    gw_put_u8(&w, (uint8_t)meta->label_count);
    for (uint32_t i = 0; i < meta->label_count; i++) {
        if (meta->labels[i].key[0] == '\0')
            bad = true;
        put_str(&w, meta->labels[i].key, GOSSIP_LABEL_KEY_MAX, &bad);
        put_str(&w, meta->labels[i].value, GOSSIP_LABEL_VALUE_MAX, &bad);
    }
    if (bad)
        return NX_ERR_INVAL;
    if (w.overflow)
        return NX_ERR_TOO_BIG;
    return (int)w.len;
}

/* Reads a length-prefixed string without NUL bytes into out (max+1 bytes). */
static void get_str(struct gw_reader *r, char *out, size_t max, bool allow_empty)
{
    uint8_t n = gw_get_u8(r);
    const uint8_t *p = gw_get_bytes(r, n);
    if (!p || n > max || (!allow_empty && n == 0) || memchr(p, 0, n)) {
        r->err = true;
        out[0] = '\0';
        return;
    }
    memcpy(out, p, n);
    out[n] = '\0';
}

int gossip_meta_decode(struct gossip_meta *meta, const uint8_t *in, size_t len)
{
    struct gw_reader r = {.buf = in, .len = len};
    memset(meta, 0, sizeof *meta);
    if (len > GOSSIP_META_MAX_BYTES)
        return NX_ERR_DECODE;
    get_str(&r, meta->addr, GOSSIP_ADDR_MAX, true);
    get_str(&r, meta->version, GOSSIP_VERSION_MAX, true);
    uint8_t role = gw_get_u8(&r);
    if (role >= GOSSIP_RAFT__COUNT)
        return NX_ERR_DECODE;
    meta->raft_role = (enum gossip_raft_role)role;
    meta->cpu_free_millicores = gw_get_u32(&r);
    meta->cpu_total_millicores = gw_get_u32(&r);
    meta->mem_free_bytes = gw_get_u64(&r);
    meta->mem_total_bytes = gw_get_u64(&r);
    meta->gpu_count = gw_get_u16(&r);
    meta->gpu_mem_count = gw_get_u8(&r);
    if (meta->gpu_mem_count > GOSSIP_GPUS_MAX)
        return NX_ERR_DECODE;
    for (uint32_t i = 0; i < meta->gpu_mem_count; i++)
        meta->gpu_mem_bytes[i] = gw_get_u64(&r);
    meta->label_count = gw_get_u8(&r);
    if (meta->label_count > GOSSIP_LABELS_MAX)
        return NX_ERR_DECODE;
    for (uint32_t i = 0; i < meta->label_count && !r.err; i++) {
        get_str(&r, meta->labels[i].key, GOSSIP_LABEL_KEY_MAX, false);
        get_str(&r, meta->labels[i].value, GOSSIP_LABEL_VALUE_MAX, true);
    }
    if (r.err || r.pos != len)
        return NX_ERR_DECODE;
    return NX_OK;
}

bool gw_meta_addr(const uint8_t *meta, size_t len, char *out)
{
    out[0] = '\0';
    if (len < 1 || meta[0] == 0 || meta[0] > GOSSIP_ADDR_MAX || (size_t)meta[0] + 1 > len)
        return false;
    memcpy(out, meta + 1, meta[0]);
    out[meta[0]] = '\0';
    return true;
}

/* ---- updates and messages ------------------------------------------------ */

size_t gw_update_size(uint8_t kind, size_t meta_len)
{
    switch (kind) {
    case GW_ALIVE:
        return GW_UPDATE_FIXED_BYTES + 2 + meta_len;
    case GW_SUSPECT:
    case GW_DEAD:
        return GW_UPDATE_FIXED_BYTES + GOSSIP_ID_BYTES;
    default:
        return GW_UPDATE_FIXED_BYTES;
    }
}

void gw_put_update(struct gw_writer *w, uint8_t kind, const uint8_t *id, uint64_t incarnation,
                   const uint8_t *meta, uint16_t meta_len, const uint8_t *from)
{
    gw_put_u8(w, kind);
    gw_put_bytes(w, id, GOSSIP_ID_BYTES);
    gw_put_u64(w, incarnation);
    if (kind == GW_ALIVE) {
        gw_put_u16(w, meta_len);
        gw_put_bytes(w, meta, meta_len);
    } else if (kind == GW_SUSPECT || kind == GW_DEAD) {
        gw_put_bytes(w, from, GOSSIP_ID_BYTES);
    }
}

void gw_next_update(struct gw_reader *r, struct gw_update *u)
{
    memset(u, 0, sizeof *u);
    u->kind = gw_get_u8(r);
    u->id = gw_get_bytes(r, GOSSIP_ID_BYTES);
    u->incarnation = gw_get_u64(r);
    if (u->kind == GW_ALIVE) {
        u->meta_len = gw_get_u16(r);
        u->meta = gw_get_bytes(r, u->meta_len);
    } else if (u->kind == GW_SUSPECT || u->kind == GW_DEAD) {
        u->from = gw_get_bytes(r, GOSSIP_ID_BYTES);
    } else if (u->kind != GW_LEFT) {
        r->err = true;
    }
}

void gw_put_header(struct gw_writer *w, uint8_t type, uint32_t seq)
{
    gw_put_u8(w, GW_VERSION);
    gw_put_u8(w, type);
    gw_put_u32(w, seq);
}

/* A length-prefixed address: at most GOSSIP_ADDR_MAX bytes, no NUL. */
static void get_addr(struct gw_reader *r, const uint8_t **addr, uint8_t *len)
{
    *len = gw_get_u8(r);
    *addr = gw_get_bytes(r, *len);
    if (*len > GOSSIP_ADDR_MAX || (*addr && memchr(*addr, 0, *len)))
        r->err = true;
}

void gw_put_addr(struct gw_writer *w, const char *addr)
{
    size_t n = strnlen(addr, GOSSIP_ADDR_MAX);
    gw_put_u8(w, (uint8_t)n);
    gw_put_bytes(w, addr, n);
}

int gw_parse(struct gw_msg *msg, const uint8_t *buf, size_t len)
{
    struct gw_reader r = {.buf = buf, .len = len};
    memset(msg, 0, sizeof *msg);
    if (len > GOSSIP_WIRE_MAX_BYTES || gw_get_u8(&r) != GW_VERSION)
        return NX_ERR_DECODE;
    msg->type = gw_get_u8(&r);
    msg->seq = gw_get_u32(&r);
    switch (msg->type) {
    case GOSSIP_MSG_PING:
        msg->target = gw_get_bytes(&r, GOSSIP_ID_BYTES);
        get_addr(&r, &msg->reply_addr, &msg->reply_addr_len);
        break;
    case GOSSIP_MSG_PING_REQ:
        msg->target = gw_get_bytes(&r, GOSSIP_ID_BYTES);
        get_addr(&r, &msg->addr, &msg->addr_len);
        get_addr(&r, &msg->reply_addr, &msg->reply_addr_len);
        break;
    case GOSSIP_MSG_ACK:
        msg->incarnation = gw_get_u64(&r);
        break;
    case GOSSIP_MSG_NACK:
    case GOSSIP_MSG_PUSH_PULL:
    case GOSSIP_MSG_PUSH_PULL_REPLY:
    case GOSSIP_MSG_GOSSIP:
        break;
    default:
        return NX_ERR_DECODE;
    }
    msg->update_count = gw_get_u16(&r);
    if (r.err)
        return NX_ERR_DECODE;
    msg->updates = r;
    struct gossip_meta meta;
    for (uint32_t i = 0; i < msg->update_count; i++) {
        struct gw_update u;
        gw_next_update(&r, &u);
        if (r.err)
            return NX_ERR_DECODE;
        if (u.kind == GW_ALIVE && gossip_meta_decode(&meta, u.meta, u.meta_len) != NX_OK)
            return NX_ERR_DECODE;
    }
    if (r.pos != len)
        return NX_ERR_DECODE;
    return NX_OK;
}
