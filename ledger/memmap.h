/*
 * memmap.h - private: an ordered byte-string map (a treap), the in-memory
 * store's table and the write batch's overlay.
 *
 * Priorities are a hash of the key, so the shape of the tree, and with it
 * everything built on it, is a function of its contents: no randomness.
 * Entries may be tombstones (a batch's deletes).
 */
#ifndef NX_LEDGER_MEMMAP_H
#define NX_LEDGER_MEMMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mm_node {
    struct mm_node *left, *right;
    uint64_t prio;
    uint8_t *key; /* owned */
    size_t key_len;
    uint8_t *val; /* owned; NULL for a tombstone */
    size_t val_len;
};

struct memmap {
    struct mm_node *root;
    size_t count;
};

/* Callback per entry in key order: 0 go on, 1 stop, <0 error. val NULL: tombstone. */
typedef int (*mm_fn)(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                     size_t val_len);

void mm_init(struct memmap *m);
void mm_free(struct memmap *m);
struct mm_node *mm_find(const struct memmap *m, const uint8_t *key, size_t key_len);
/* Inserts or replaces; val NULL stores a tombstone. 0 or NX_ERR_NOMEM. */
int mm_put(struct memmap *m, const uint8_t *key, size_t key_len, const uint8_t *val,
           size_t val_len);
/* Removes the entry if present. */
void mm_remove(struct memmap *m, const uint8_t *key, size_t key_len);
/* Entries whose key starts with prefix, in order. Returns 0 or the callback's error. */
int mm_iter(const struct memmap *m, const uint8_t *prefix, size_t prefix_len, mm_fn fn, void *arg);

#endif
