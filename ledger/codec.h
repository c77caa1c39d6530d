/*
 * codec.h - private: the canonical byte layout shared by commands, stored
 * records and snapshots. Fixed-width little-endian integers, fixed-size byte
 * fields, and names as a u8 length plus bytes. A reader fails sticky (err)
 * and a decode succeeds only when every byte was consumed, so each value has
 * exactly one encoding.
 *
 * One visitor per layout (struct codec in encode or decode mode) keeps the
 * writer and the reader of a layout from drifting apart.
 */
#ifndef NX_LEDGER_CODEC_H
#define NX_LEDGER_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct codec {
    bool decode;
    bool err;
    uint8_t *buf; /* encode: owned, grown with realloc; decode: borrowed */
    size_t len;   /* encode: bytes written; decode: total */
    size_t cap;
    size_t off; /* decode position */
};

void codec_enc_init(struct codec *c);
void codec_dec_init(struct codec *c, const uint8_t *buf, size_t len);
/* Decode: true when no error and every byte was read. */
bool codec_done(const struct codec *c);
void codec_free(struct codec *c);

void f_u8(struct codec *c, uint8_t *v);
void f_u32(struct codec *c, uint32_t *v);
void f_u64(struct codec *c, uint64_t *v);
void f_fixed(struct codec *c, uint8_t *p, size_t n);
/* A name: [a-z0-9._-]{1,64} as a u8 length plus bytes; s has LEDGER_STR_CAP bytes.
 * flags may allow "" (NAME_EMPTY_OK) or exactly "*" (NAME_STAR_OK). */
#define NAME_EMPTY_OK 1
#define NAME_STAR_OK 2
void f_name(struct codec *c, char *s, int flags);
/* A byte string of at most cap bytes, as a u32 length plus bytes. */
void f_blob(struct codec *c, uint8_t *p, size_t *len, size_t cap);

bool ledger_name_ok(const char *s);

static inline void le64_put(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint64_t le64_get(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}
static inline void be64_put(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}
static inline uint64_t be64_get(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

#endif
