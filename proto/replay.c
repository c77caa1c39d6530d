/*
 * replay.c - per-sender replay windows in a bounded, LRU-evicted table.
 *
 * The window is the one of RFC 6479 and WireGuard: a ring of REPLAY_WORDS
 * 64-bit words, bit (seq % 64) of word ((seq / 64) % REPLAY_WORDS) says
 * whether seq was seen. top_seq is the highest accepted number.
 *
 *   seq > top_seq                         accept; clear the words of the blocks
 *                                         top_seq/64+1 .. seq/64 (all of them at
 *                                         most), top_seq = seq
 *   top_seq - seq >= NCAP_REPLAY_WINDOW   reject: too old to tell
 *   otherwise                             accept iff its bit is clear
 *
 * Invariant: the numbers top_seq-NCAP_REPLAY_WINDOW+1 .. top_seq lie in at most
 * REPLAY_WORDS consecutive 64-number blocks, so their bits never share a word
 * with an older block; every word of such a block was cleared when top_seq
 * first entered or jumped past it.
 *
 * Lookup is a chained hash on the first 8 bytes of the key (only keys whose
 * signature verified are ever inserted, so an attacker cannot choose them
 * freely); recency is a doubly linked list of indices. Evicting an entry
 * raises floor_ms to its newest timestamp: a sender that comes back must then
 * present a newer timestamp, so a replay of its old envelopes still fails.
 */
#include "proto/replay.h"

#include <stdlib.h>
#include <string.h>

#define NONE UINT32_MAX

static uint32_t bucket_of(const struct replay_table *t, const uint8_t pk[NCAP_KEY_BYTES])
{
    uint64_t x;
    memcpy(&x, pk, sizeof x);
    return (uint32_t)((x * 0x9E3779B97F4A7C15ull) >> (64 - t->bucket_bits));
}

static uint32_t find(const struct replay_table *t, const uint8_t pk[NCAP_KEY_BYTES])
{
    for (uint32_t i = t->buckets[bucket_of(t, pk)]; i != NONE; i = t->entries[i].hash_next)
        if (memcmp(t->entries[i].pk, pk, NCAP_KEY_BYTES) == 0)
            return i;
    return NONE;
}

int replay_table_init(struct replay_table *t, uint32_t cap, uint64_t floor_ms)
{
    memset(t, 0, sizeof *t);
    if (cap == 0 || cap > NCAP_MAX_SENDERS)
        return NX_ERR_INVAL;
    t->bucket_bits = 1;
    while ((1u << t->bucket_bits) < 2 * cap)
        t->bucket_bits++;
    t->entries = calloc(cap, sizeof *t->entries);
    t->buckets = malloc(sizeof *t->buckets << t->bucket_bits);
    if (!t->entries || !t->buckets) {
        replay_table_free(t);
        return NX_ERR_NOMEM;
    }
    memset(t->buckets, 0xff, sizeof *t->buckets << t->bucket_bits);
    t->cap = cap;
    t->lru_head = t->lru_tail = NONE;
    t->floor_ms = floor_ms;
    return NX_OK;
}

void replay_table_free(struct replay_table *t)
{
    free(t->entries);
    free(t->buckets);
    memset(t, 0, sizeof *t);
}

static bool window_allows(const struct replay_entry *e, uint64_t seq)
{
    if (seq > e->top_seq)
        return true;
    if (e->top_seq - seq >= NCAP_REPLAY_WINDOW)
        return false;
    return !((e->bits[(seq / 64) % REPLAY_WORDS] >> (seq % 64)) & 1);
}

static void window_mark(struct replay_entry *e, uint64_t seq)
{
    if (seq > e->top_seq) {
        uint64_t blocks = seq / 64 - e->top_seq / 64;
        if (blocks > REPLAY_WORDS)
            blocks = REPLAY_WORDS;
        for (uint64_t i = 1; i <= blocks; i++)
            e->bits[(e->top_seq / 64 + i) % REPLAY_WORDS] = 0;
        e->top_seq = seq;
    }
    e->bits[(seq / 64) % REPLAY_WORDS] |= 1ull << (seq % 64);
}

bool replay_would_accept(const struct replay_table *t, const uint8_t pk[NCAP_KEY_BYTES],
                         uint64_t seq, uint64_t ts_ms)
{
    uint32_t i = find(t, pk);
    if (i == NONE)
        return ts_ms > t->floor_ms;
    return window_allows(&t->entries[i], seq);
}

static void lru_unlink(struct replay_table *t, uint32_t i)
{
    struct replay_entry *e = &t->entries[i];
    if (e->lru_prev != NONE)
        t->entries[e->lru_prev].lru_next = e->lru_next;
    else
        t->lru_head = e->lru_next;
    if (e->lru_next != NONE)
        t->entries[e->lru_next].lru_prev = e->lru_prev;
    else
        t->lru_tail = e->lru_prev;
}

static void lru_push_head(struct replay_table *t, uint32_t i)
{
    struct replay_entry *e = &t->entries[i];
    e->lru_prev = NONE;
    e->lru_next = t->lru_head;
    if (t->lru_head != NONE)
        t->entries[t->lru_head].lru_prev = i;
    t->lru_head = i;
    if (t->lru_tail == NONE)
        t->lru_tail = i;
}

static void hash_unlink(struct replay_table *t, uint32_t i)
{
    uint32_t *link = &t->buckets[bucket_of(t, t->entries[i].pk)];
    while (*link != i) {
        NX_ASSERT(*link != NONE);
        link = &t->entries[*link].hash_next;
    }
    *link = t->entries[i].hash_next;
}

/* A slot for a new sender: a free one, or the least recently used one. */
static uint32_t take_slot(struct replay_table *t)
{
    if (t->used < t->cap)
        return t->used++;
    uint32_t i = t->lru_tail;
    NX_ASSERT(i != NONE);
    if (t->entries[i].top_ts_ms > t->floor_ms)
        t->floor_ms = t->entries[i].top_ts_ms;
    lru_unlink(t, i);
    hash_unlink(t, i);
    t->evicted++;
    return i;
}

void replay_commit(struct replay_table *t, const uint8_t pk[NCAP_KEY_BYTES], uint64_t seq,
                   uint64_t ts_ms)
{
    uint32_t i = find(t, pk);
    if (i == NONE) {
        i = take_slot(t);
        struct replay_entry *e = &t->entries[i];
        memset(e, 0, sizeof *e);
        memcpy(e->pk, pk, NCAP_KEY_BYTES);
        e->top_seq = seq;
        uint32_t b = bucket_of(t, pk);
        e->hash_next = t->buckets[b];
        t->buckets[b] = i;
    } else {
        lru_unlink(t, i);
    }
    lru_push_head(t, i);
    struct replay_entry *e = &t->entries[i];
    window_mark(e, seq);
    if (ts_ms > e->top_ts_ms)
        e->top_ts_ms = ts_ms;
}
