/*
 * wire.h - private: the byte layout of gossip messages and member metadata.
 *
 * Everything the core sends or receives passes through here. Writers never
 * overrun their buffer (they set an overflow flag instead); readers never read
 * past the end and report any malformation through an error flag, so
 * gossip_receive can reject a message before it changes any state.
 *
 * All integers are little-endian and fixed width. See docs/gossip.md.
 */
#ifndef NX_GOSSIP_WIRE_H
#define NX_GOSSIP_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gossip/gossip.h"

#define GW_VERSION 1
#define GW_HEADER_BYTES 6 /* version u8, type u8, seq u32 */
#define GW_COUNT_BYTES 2  /* u16 number of updates */

/* Kinds of update records (piggy-backed, and the entries of push-pull). */
enum gw_kind { GW_ALIVE = 1, GW_SUSPECT = 2, GW_DEAD = 3, GW_LEFT = 4 };

/* Fixed part of an update record: kind u8, id[32], incarnation u64. */
#define GW_UPDATE_FIXED_BYTES (1 + GOSSIP_ID_BYTES + 8)

struct gw_writer {
    uint8_t *buf; /* borrowed */
    size_t cap;
    size_t len;
    bool overflow;
};

struct gw_reader {
    const uint8_t *buf; /* borrowed */
    size_t len;
    size_t pos;
    bool err;
};

void gw_put_u8(struct gw_writer *w, uint8_t v);
void gw_put_u16(struct gw_writer *w, uint16_t v);
void gw_put_u32(struct gw_writer *w, uint32_t v);
void gw_put_u64(struct gw_writer *w, uint64_t v);
void gw_put_bytes(struct gw_writer *w, const void *p, size_t n);
/* Overwrites a u16 already written at offset `at`. */
void gw_patch_u16(struct gw_writer *w, size_t at, uint16_t v);

uint8_t gw_get_u8(struct gw_reader *r);
uint16_t gw_get_u16(struct gw_reader *r);
uint32_t gw_get_u32(struct gw_reader *r);
uint64_t gw_get_u64(struct gw_reader *r);
/* Pointer to the next n bytes inside the buffer, or NULL (and err) if short. */
const uint8_t *gw_get_bytes(struct gw_reader *r, size_t n);

/* One decoded update; pointers borrow from the message buffer. */
struct gw_update {
    uint8_t kind;
    const uint8_t *id;
    uint64_t incarnation;
    const uint8_t *meta; /* GW_ALIVE only */
    uint16_t meta_len;
    const uint8_t *from; /* GW_SUSPECT and GW_DEAD only */
};

/* One decoded message; pointers borrow from the message buffer. */
struct gw_msg {
    uint8_t type;
    uint32_t seq;
    const uint8_t *target; /* PING, PING_REQ */
    const uint8_t *addr;   /* PING_REQ: target address, not NUL-terminated */
    uint8_t addr_len;
    const uint8_t *reply_addr; /* PING, PING_REQ: the sender's own address */
    uint8_t reply_addr_len;
    uint64_t incarnation; /* ACK: the acknowledging member's incarnation */
    uint16_t update_count;
    struct gw_reader updates; /* positioned at the first update */
};

/*
 * Parses and fully validates a message, including every update and every
 * metadata blob in it. 0 or NX_ERR_DECODE. On success, gw_next_update walks
 * msg->updates without further failure.
 */
int gw_parse(struct gw_msg *msg, const uint8_t *buf, size_t len) NX_MUST_USE;
/* Reads the next update of a message gw_parse accepted. */
void gw_next_update(struct gw_reader *r, struct gw_update *u);

/* Writes a length-prefixed address (at most GOSSIP_ADDR_MAX bytes). */
void gw_put_addr(struct gw_writer *w, const char *addr);
/* Writes the message header. */
void gw_put_header(struct gw_writer *w, uint8_t type, uint32_t seq);

/* Bytes an update record takes on the wire. */
size_t gw_update_size(uint8_t kind, size_t meta_len);
/* Writes an update record. meta only for GW_ALIVE, from for SUSPECT/DEAD. */
void gw_put_update(struct gw_writer *w, uint8_t kind, const uint8_t *id, uint64_t incarnation,
                   const uint8_t *meta, uint16_t meta_len, const uint8_t *from);

/*
 * The address inside encoded metadata (its first field), copied into out
 * (GOSSIP_ADDR_MAX + 1 bytes) with a NUL. Returns false if absent or empty.
 */
bool gw_meta_addr(const uint8_t *meta, size_t len, char *out);

#endif
