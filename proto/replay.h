/*
 * replay.h - private to proto/: a bounded table of senders, each with a
 * sliding replay window over its sequence numbers.
 *
 * Owns: which (sender, seq) pairs were accepted, least-recently-used
 * eviction, and the timestamp floor that keeps eviction from reopening a
 * replay. Never touches: signatures or the clock (the caller checks, then
 * commits). Only ncap.c and the unit tests include this header.
 */
#ifndef NX_PROTO_REPLAY_H
#define NX_PROTO_REPLAY_H

#include <stdbool.h>
#include <stdint.h>

#include "proto/ncap.h"

/* One bit per sequence number, in a ring of 64-bit words; the extra word lets
 * the window span NCAP_REPLAY_WINDOW numbers at any alignment. */
#define REPLAY_WORDS (NCAP_REPLAY_WINDOW / 64 + 1)

struct replay_entry {
    uint8_t pk[NCAP_KEY_BYTES];
    uint64_t top_seq;   /* highest seq accepted */
    uint64_t top_ts_ms; /* newest timestamp accepted */
    uint64_t bits[REPLAY_WORDS];
    uint32_t lru_prev, lru_next; /* towards most / least recently used */
    uint32_t hash_next;          /* next entry in the same bucket */
};

struct replay_table {
    struct replay_entry *entries; /* owned, cap of them */
    uint32_t *buckets;            /* owned, 1 << bucket_bits heads */
    uint32_t cap, used, bucket_bits;
    uint32_t lru_head, lru_tail; /* most, least recently used */
    uint64_t floor_ms;           /* new senders need timestamp_ms > floor_ms */
    uint64_t evicted;
};

int replay_table_init(struct replay_table *t, uint32_t cap, uint64_t floor_ms) NX_MUST_USE;
void replay_table_free(struct replay_table *t);
/* Would (pk, seq, ts_ms) be accepted? Changes nothing. */
bool replay_would_accept(const struct replay_table *t, const uint8_t pk[NCAP_KEY_BYTES],
                         uint64_t seq, uint64_t ts_ms);
/*
 * Records (pk, seq, ts_ms), evicting the least recently used sender when the
 * table is full. Call only after replay_would_accept() said yes and the
 * signature verified.
 */
void replay_commit(struct replay_table *t, const uint8_t pk[NCAP_KEY_BYTES], uint64_t seq,
                   uint64_t ts_ms);

#endif
