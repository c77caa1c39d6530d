/*
 * memmap.c - a treap keyed by byte strings (memcmp order, shorter first on a
 * tie), with split/merge insertion and deletion. Priorities come from a hash
 * of the key (FNV-1a, then a splitmix finalizer): deterministic, and balanced
 * in expectation for the keys the ledger makes.
 */
#include "ledger/memmap.h"

#include <stdlib.h>
#include <string.h>

#include "base/base.h"

static uint64_t key_prio(const uint8_t *key, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ key[i]) * 1099511628211ULL;
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    return h ^ (h >> 31);
}

static int key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

static void node_free(struct mm_node *n)
{
    free(n->key);
    free(n->val);
    free(n);
}

static void free_tree(struct mm_node *n)
{
    while (n) {
        free_tree(n->left);
        struct mm_node *r = n->right;
        node_free(n);
        n = r;
    }
}

void mm_init(struct memmap *m)
{
    m->root = NULL;
    m->count = 0;
}

void mm_free(struct memmap *m)
{
    free_tree(m->root);
    mm_init(m);
}

struct mm_node *mm_find(const struct memmap *m, const uint8_t *key, size_t key_len)
{
    struct mm_node *n = m->root;
    while (n) {
        int c = key_cmp(key, key_len, n->key, n->key_len);
        if (c == 0)
            return n;
        n = c < 0 ? n->left : n->right;
    }
    return NULL;
}

/* Splits t into keys < key (*l) and keys > key (*r); key itself is not in t. */
static void split(struct mm_node *t, const uint8_t *key, size_t key_len, struct mm_node **l,
                  struct mm_node **r)
{
    if (!t) {
        *l = *r = NULL;
        return;
    }
    if (key_cmp(t->key, t->key_len, key, key_len) < 0) {
        split(t->right, key, key_len, &t->right, r);
        *l = t;
    } else {
        split(t->left, key, key_len, l, &t->left);
        *r = t;
    }
}

static struct mm_node *merge(struct mm_node *l, struct mm_node *r)
{
    if (!l)
        return r;
    if (!r)
        return l;
    if (l->prio > r->prio) {
        l->right = merge(l->right, r);
        return l;
    }
    r->left = merge(l, r->left);
    return r;
}

static int set_val(struct mm_node *n, const uint8_t *val, size_t val_len)
{
    uint8_t *copy = NULL;
    if (val) {
        copy = malloc(val_len ? val_len : 1);
        if (!copy)
            return NX_ERR_NOMEM;
        if (val_len)
            memcpy(copy, val, val_len);
    }
    free(n->val);
    n->val = copy;
    n->val_len = val ? val_len : 0;
    return 0;
}

/* Inserts n below *t at its place by priority. */
static void insert(struct mm_node **t, struct mm_node *n)
{
    while (*t && (*t)->prio >= n->prio)
        t = key_cmp(n->key, n->key_len, (*t)->key, (*t)->key_len) < 0 ? &(*t)->left : &(*t)->right;
    split(*t, n->key, n->key_len, &n->left, &n->right);
    *t = n;
}

int mm_put(struct memmap *m, const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len)
{
    struct mm_node *n = mm_find(m, key, key_len);
    if (n)
        return set_val(n, val, val_len);
    n = calloc(1, sizeof *n);
    if (!n)
        return NX_ERR_NOMEM;
    n->key = malloc(key_len ? key_len : 1);
    if (!n->key || set_val(n, val, val_len) < 0) {
        node_free(n);
        return NX_ERR_NOMEM;
    }
    memcpy(n->key, key, key_len);
    n->key_len = key_len;
    n->prio = key_prio(key, key_len);
    insert(&m->root, n);
    m->count++;
    return 0;
}

void mm_remove(struct memmap *m, const uint8_t *key, size_t key_len)
{
    struct mm_node **t = &m->root;
    while (*t) {
        int c = key_cmp(key, key_len, (*t)->key, (*t)->key_len);
        if (c == 0) {
            struct mm_node *dead = *t;
            *t = merge(dead->left, dead->right);
            node_free(dead);
            m->count--;
            return;
        }
        t = c < 0 ? &(*t)->left : &(*t)->right;
    }
}

enum { VISIT_PAST = 2 }; /* internal: walked past the prefix range */

static int visit(const struct mm_node *t, const uint8_t *prefix, size_t plen, mm_fn fn, void *arg)
{
    while (t) {
        bool has = t->key_len >= plen && memcmp(t->key, prefix, plen) == 0;
        if (!has && key_cmp(t->key, t->key_len, prefix, plen) < 0) {
            t = t->right; /* everything on the left is smaller still */
            continue;
        }
        int r = visit(t->left, prefix, plen, fn, arg);
        if (r)
            return r;
        if (!has)
            return VISIT_PAST;
        r = fn(arg, t->key, t->key_len, t->val, t->val_len);
        if (r)
            return r;
        t = t->right;
    }
    return 0;
}

int mm_iter(const struct memmap *m, const uint8_t *prefix, size_t prefix_len, mm_fn fn, void *arg)
{
    int r = visit(m->root, prefix, prefix_len, fn, arg);
    return r < 0 ? r : 0;
}
