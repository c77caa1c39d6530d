/*
 * lin.c - Wing-Gong-Lowe linearizability checking of key-value histories.
 *
 * For each key: the ops become call and return events in a doubly-linked list
 * sorted by time (a call sorts before a return at the same time, so touching
 * intervals count as concurrent: the check never reports a false violation
 * because of clock granularity). The search walks the list: at a call it tries
 * to linearize that op now (the model accepts it and the resulting
 * configuration is new), lifting its call and return out of the list and
 * pushing an undo record; at a return whose call is still in the list, the
 * op cannot be placed later, so the last choice is undone. The list empties
 * exactly when every op has a place. Ops of unknown outcome return at +inf:
 * they can always be placed at the end, where a put or delete is legal.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/lin/lin.h"

#define NO_RETURN UINT64_MAX

void lin_history_init(struct lin_history *h)
{
    memset(h, 0, sizeof *h);
}

void lin_history_free(struct lin_history *h)
{
    for (size_t i = 0; i < h->n_keys; i++)
        free(h->key_names[i]);
    for (size_t i = 0; i < h->n_values; i++)
        free(h->value_names[i]);
    free(h->key_names);
    free(h->value_names);
    free(h->ops);
    memset(h, 0, sizeof *h);
}

int lin_history_add(struct lin_history *h, const struct lin_op *op)
{
    if (op->outcome != LIN_UNKNOWN && op->return_us < op->invoke_us)
        return NX_ERR_INVAL;
    if (op->kind > LIN_DELETE || op->outcome > LIN_UNKNOWN)
        return NX_ERR_INVAL;
    if (h->n >= LIN_MAX_OPS)
        return NX_ERR_FULL;
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 256;
        struct lin_op *n = realloc(h->ops, cap * sizeof *n);
        if (!n)
            return NX_ERR_NOMEM;
        h->ops = n;
        h->cap = cap;
    }
    h->ops[h->n++] = *op;
    return NX_OK;
}

/* ---- text format -------------------------------------------------------- */

static int intern(char ***names, size_t *n, const char *s, uint64_t *id)
{
    for (size_t i = 0; i < *n; i++) {
        if (strcmp((*names)[i], s) == 0) {
            *id = i;
            return NX_OK;
        }
    }
    char **nn = realloc(*names, (*n + 1) * sizeof *nn);
    if (!nn)
        return NX_ERR_NOMEM;
    *names = nn;
    nn[*n] = strdup(s);
    if (!nn[*n])
        return NX_ERR_NOMEM;
    *id = (*n)++;
    return NX_OK;
}

static bool parse_u64(const char *s, uint64_t *out)
{
    if (!*s)
        return false;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return true;
}

int lin_history_parse_line(struct lin_history *h, const char *line, uint32_t line_no, char *err,
                           size_t err_len)
{
    char buf[LIN_MAX_LINE];
    size_t len = strlen(line);
    if (len >= sizeof buf) {
        snprintf(err, err_len, "line %u: longer than %u bytes", line_no, LIN_MAX_LINE);
        return NX_ERR_DECODE;
    }
    memcpy(buf, line, len + 1);
    char *hash = strchr(buf, '#');
    if (hash)
        *hash = 0;
    char *f[8];
    int nf = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, " \t\r\n", &save); t; t = strtok_r(NULL, " \t\r\n", &save)) {
        if (nf == 8)
            break;
        f[nf++] = t;
    }
    if (nf == 0)
        return NX_ERR_NOT_FOUND;
    if (nf != 7) {
        snprintf(err, err_len, "line %u: want 7 fields, got %d", line_no, nf);
        return NX_ERR_DECODE;
    }
    struct lin_op op = {0};
    uint64_t client;
    op.line = line_no;
    if (!parse_u64(f[0], &client) || client > UINT32_MAX) {
        snprintf(err, err_len, "line %u: bad client '%s'", line_no, f[0]);
        return NX_ERR_DECODE;
    }
    op.client = (uint32_t)client;
    if (strcmp(f[1], "put") == 0)
        op.kind = LIN_PUT;
    else if (strcmp(f[1], "get") == 0)
        op.kind = LIN_GET;
    else if (strcmp(f[1], "delete") == 0 || strcmp(f[1], "del") == 0)
        op.kind = LIN_DELETE;
    else {
        snprintf(err, err_len, "line %u: unknown op '%s'", line_no, f[1]);
        return NX_ERR_DECODE;
    }
    if (strcmp(f[6], "ok") == 0)
        op.outcome = LIN_OK;
    else if (strcmp(f[6], "fail") == 0)
        op.outcome = LIN_FAIL;
    else if (strcmp(f[6], "unknown") == 0)
        op.outcome = LIN_UNKNOWN;
    else {
        snprintf(err, err_len, "line %u: unknown outcome '%s'", line_no, f[6]);
        return NX_ERR_DECODE;
    }
    if (!parse_u64(f[4], &op.invoke_us) ||
        !(parse_u64(f[5], &op.return_us) || (op.outcome != LIN_OK && !strcmp(f[5], "-")))) {
        snprintf(err, err_len, "line %u: bad times '%s' '%s'", line_no, f[4], f[5]);
        return NX_ERR_DECODE;
    }
    if (op.kind == LIN_PUT && strcmp(f[3], "-") == 0) {
        snprintf(err, err_len, "line %u: put needs a value", line_no);
        return NX_ERR_DECODE;
    }
    int rc = intern(&h->key_names, &h->n_keys, f[2], &op.key);
    if (rc != NX_OK)
        return rc;
    if (op.outcome != LIN_OK && !strcmp(f[5], "-"))
        op.return_us = op.invoke_us; /* fail: dropped anyway; unknown: never returns */
    op.value = LIN_ABSENT;
    if (strcmp(f[3], "-") != 0 && op.kind != LIN_DELETE) {
        uint64_t v;
        rc = intern(&h->value_names, &h->n_values, f[3], &v);
        if (rc != NX_OK)
            return rc;
        op.value = (int64_t)v;
    }
    rc = lin_history_add(h, &op);
    if (rc == NX_ERR_INVAL)
        snprintf(err, err_len, "line %u: returns before it is invoked", line_no);
    else if (rc != NX_OK)
        snprintf(err, err_len, "line %u: %s", line_no, nx_strerror(rc));
    return rc == NX_ERR_INVAL ? NX_ERR_DECODE : rc;
}

int lin_history_read_file(struct lin_history *h, const char *path, char *err, size_t err_len)
{
    FILE *fp = fopen(path, "r");
    if (!fp) {
        snprintf(err, err_len, "cannot open %s", path);
        return NX_ERR_IO;
    }
    char line[LIN_MAX_LINE + 2];
    uint32_t no = 0;
    int rc = NX_OK;
    while (fgets(line, sizeof line, fp)) {
        no++;
        if (!strchr(line, '\n') && !feof(fp)) {
            snprintf(err, err_len, "line %u: longer than %u bytes", no, LIN_MAX_LINE);
            rc = NX_ERR_DECODE;
            break;
        }
        rc = lin_history_parse_line(h, line, no, err, err_len);
        if (rc == NX_ERR_NOT_FOUND)
            rc = NX_OK;
        if (rc != NX_OK)
            break;
    }
    fclose(fp);
    return rc;
}

/* ---- the search --------------------------------------------------------- */

struct ev {
    uint32_t op; /* index into the key's ops */
    bool is_call;
    uint64_t time;
    int32_t prev, next, match; /* list links and call<->return, -1: none */
};

struct memo {
    uint64_t *slots; /* per slot: words of bitset then the state; empty: used[i] == 0 */
    uint8_t *used;
    size_t n_slots;
    size_t n_used;
    size_t words;
};

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static int memo_init(struct memo *m, size_t words)
{
    m->words = words;
    m->n_slots = 1024;
    m->n_used = 0;
    m->slots = calloc(m->n_slots * (words + 1), sizeof(uint64_t));
    m->used = calloc(m->n_slots, 1);
    return (m->slots && m->used) ? NX_OK : NX_ERR_NOMEM;
}

static void memo_free(struct memo *m)
{
    free(m->slots);
    free(m->used);
}

static size_t memo_find(const struct memo *m, const uint64_t *bits, int64_t state, bool *found)
{
    uint64_t hsh = mix((uint64_t)state);
    for (size_t w = 0; w < m->words; w++)
        hsh = mix(hsh ^ bits[w]);
    size_t i = hsh & (m->n_slots - 1);
    for (;;) {
        if (!m->used[i]) {
            *found = false;
            return i;
        }
        const uint64_t *s = &m->slots[i * (m->words + 1)];
        if ((int64_t)s[m->words] == state && memcmp(s, bits, m->words * 8) == 0) {
            *found = true;
            return i;
        }
        i = (i + 1) & (m->n_slots - 1);
    }
}

static int memo_insert_at(struct memo *m, size_t i, const uint64_t *bits, int64_t state);

static int memo_grow(struct memo *m)
{
    struct memo old = *m;
    m->n_slots *= 2;
    m->n_used = 0;
    m->slots = calloc(m->n_slots * (m->words + 1), sizeof(uint64_t));
    m->used = calloc(m->n_slots, 1);
    if (!m->slots || !m->used) {
        memo_free(m);
        *m = old;
        return NX_ERR_NOMEM;
    }
    for (size_t i = 0; i < old.n_slots; i++) {
        if (!old.used[i])
            continue;
        const uint64_t *s = &old.slots[i * (old.words + 1)];
        bool found;
        size_t j = memo_find(m, s, (int64_t)s[old.words], &found);
        (void)memo_insert_at(m, j, s, (int64_t)s[old.words]);
    }
    memo_free(&old);
    return NX_OK;
}

static int memo_insert_at(struct memo *m, size_t i, const uint64_t *bits, int64_t state)
{
    uint64_t *s = &m->slots[i * (m->words + 1)];
    memcpy(s, bits, m->words * 8);
    s[m->words] = (uint64_t)state;
    m->used[i] = 1;
    m->n_used++;
    if (m->n_used * 2 > m->n_slots)
        return memo_grow(m);
    return NX_OK;
}

/* The register model: may op run in state? Sets *next. */
static bool model_step(const struct lin_op *op, int64_t state, int64_t *next)
{
    switch (op->kind) {
    case LIN_PUT:
        *next = op->value;
        return true;
    case LIN_DELETE:
        *next = LIN_ABSENT;
        return true;
    case LIN_GET:
        *next = state;
        return op->value == state;
    }
    return false;
}

static int cmp_ev(const void *a, const void *b)
{
    const struct ev *x = a, *y = b;
    if (x->time != y->time)
        return x->time < y->time ? -1 : 1;
    if (x->is_call != y->is_call)
        return x->is_call ? -1 : 1;
    return x->op < y->op ? -1 : (x->op > y->op ? 1 : 0);
}

struct undo {
    int32_t call;
    int64_t state;
};

static void describe(char *out, size_t len, const struct lin_history *h, const struct lin_op *op)
{
    static const char *kinds[] = {"put", "get", "delete"};
    char key[64], val[64];
    if (op->key < h->n_keys)
        snprintf(key, sizeof key, "%s", h->key_names[op->key]);
    else
        snprintf(key, sizeof key, "%llu", (unsigned long long)op->key);
    if (op->value == LIN_ABSENT)
        snprintf(val, sizeof val, "-");
    else if (h->n_values && (uint64_t)op->value < h->n_values)
        snprintf(val, sizeof val, "%s", h->value_names[op->value]);
    else
        snprintf(val, sizeof val, "%lld", (long long)op->value);
    char ret[32];
    if (op->outcome == LIN_UNKNOWN)
        snprintf(ret, sizeof ret, "?");
    else
        snprintf(ret, sizeof ret, "%llu", (unsigned long long)op->return_us);
    snprintf(out, len, "client %u %s %s %s [%llu, %s]", op->client, kinds[op->kind], key,
             op->kind == LIN_DELETE ? "-" : val, (unsigned long long)op->invoke_us, ret);
    if (op->line) {
        size_t l = strlen(out);
        snprintf(out + l, len - l, " (line %u)", op->line);
    }
}

/* Checks one key's ops. Returns 1 linearizable, 0 not, 2 budget exceeded, <0 error. */
static int check_key(const struct lin_history *h, const struct lin_op **ops, uint32_t n,
                     uint64_t max_steps, struct lin_result *res)
{
    int rc = NX_ERR_NOMEM;
    uint64_t steps = 0;
    struct ev *ev = calloc((size_t)2 * n + 1, sizeof *ev);
    int32_t *pos = calloc((size_t)2 * n, sizeof *pos);
    struct undo *stack = calloc(n + 1, sizeof *stack);
    size_t words = (n + 63) / 64;
    uint64_t *bits = calloc(words ? words : 1, sizeof *bits);
    struct memo memo = {0};
    if (!ev || !pos || !stack || !bits || memo_init(&memo, words) != NX_OK)
        goto out;
    /* ev[0] is the head sentinel; events sorted into 1..2n */
    struct ev *sorted = ev + 1;
    for (uint32_t i = 0; i < n; i++) {
        sorted[2 * i] = (struct ev){i, true, ops[i]->invoke_us, -1, -1, -1};
        uint64_t rt = ops[i]->outcome == LIN_UNKNOWN ? NO_RETURN : ops[i]->return_us;
        sorted[2 * i + 1] = (struct ev){i, false, rt, -1, -1, -1};
    }
    qsort(sorted, (size_t)2 * n, sizeof *sorted, cmp_ev);
    /* link and match */
    for (int32_t i = 0; i <= (int32_t)(2 * n); i++) {
        ev[i].prev = i - 1;
        ev[i].next = i < (int32_t)(2 * n) ? i + 1 : -1;
    }
    for (int32_t i = 1; i <= (int32_t)(2 * n); i++)
        pos[2 * ev[i].op + (ev[i].is_call ? 0 : 1)] = i;
    for (uint32_t i = 0; i < n; i++) {
        ev[pos[2 * i]].match = pos[2 * i + 1];
        ev[pos[2 * i + 1]].match = pos[2 * i];
    }
    int64_t state = LIN_ABSENT;
    uint32_t depth = 0, best_depth = 0;
    int32_t stuck = -1;
    int32_t e = ev[0].next;
    while (ev[0].next != -1) {
        if (++steps > max_steps) {
            rc = 2;
            goto out;
        }
        if (e == -1) {
            /* only reachable when the remaining list has no return: cannot happen */
            rc = NX_ERR_INTERNAL;
            goto out;
        }
        if (ev[e].is_call) {
            const struct lin_op *op = ops[ev[e].op];
            int64_t next;
            bool ok = model_step(op, state, &next);
            if (ok) {
                bits[ev[e].op / 64] |= 1ull << (ev[e].op % 64);
                bool found;
                size_t slot = memo_find(&memo, bits, next, &found);
                if (!found) {
                    if (memo_insert_at(&memo, slot, bits, next) != NX_OK)
                        goto out;
                    stack[depth++] = (struct undo){e, state};
                    state = next;
                    /* lift call and return out of the list */
                    int32_t r = ev[e].match;
                    ev[ev[e].prev].next = ev[e].next;
                    if (ev[e].next != -1)
                        ev[ev[e].next].prev = ev[e].prev;
                    ev[ev[r].prev].next = ev[r].next;
                    if (ev[r].next != -1)
                        ev[ev[r].next].prev = ev[r].prev;
                    if (depth > best_depth)
                        best_depth = depth;
                    e = ev[0].next;
                    continue;
                }
                bits[ev[e].op / 64] &= ~(1ull << (ev[e].op % 64));
            }
            e = ev[e].next;
        } else {
            if (depth == best_depth)
                stuck = e; /* the op that blocks the deepest partial order */
            if (depth == 0) {
                rc = 0;
                goto out;
            }
            struct undo u = stack[--depth];
            int32_t c = u.call, r = ev[c].match;
            state = u.state;
            bits[ev[c].op / 64] &= ~(1ull << (ev[c].op % 64));
            /* unlift: return first, then call */
            ev[ev[r].prev].next = r;
            if (ev[r].next != -1)
                ev[ev[r].next].prev = r;
            ev[ev[c].prev].next = c;
            if (ev[c].next != -1)
                ev[ev[c].next].prev = c;
            e = ev[c].next;
        }
    }
    rc = 1;
out:
    res->steps += steps;
    if (rc == 0) {
        char d[256] = "?", key[64];
        if (stuck >= 0)
            describe(d, sizeof d, h, ops[ev[stuck].op]);
        if (ops[0]->key < h->n_keys)
            snprintf(key, sizeof key, "%s", h->key_names[ops[0]->key]);
        else
            snprintf(key, sizeof key, "%llu", (unsigned long long)ops[0]->key);
        snprintf(res->explanation, sizeof res->explanation,
                 "key %s: %u ops on this key; at most %u could be ordered legally; "
                 "no legal order places: %s",
                 key, n, best_depth, d);
    }
    memo_free(&memo);
    free(ev);
    free(pos);
    free(stack);
    free(bits);
    return rc;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : (x > y ? 1 : 0);
}

/*
 * Drops unknown puts whose value no successful get of the key observed. Sound:
 * in any legal order such a put is followed by another write before any read
 * (or by nothing), so removing it keeps the order legal; and a history without
 * it extends to one with it by placing it last. This keeps the search small
 * when a real cluster leaves many writes in doubt. Returns the new count.
 */
static size_t prune_unobserved(const struct lin_op **ops, size_t n)
{
    int64_t *seen = malloc((n ? n : 1) * sizeof *seen);
    if (!seen)
        return n; /* no pruning: still correct, only slower */
    size_t n_seen = 0;
    for (size_t i = 0; i < n; i++)
        if (ops[i]->kind == LIN_GET && ops[i]->outcome == LIN_OK)
            seen[n_seen++] = ops[i]->value;
    qsort(seen, n_seen, sizeof *seen, cmp_i64);
    size_t out = 0;
    for (size_t i = 0; i < n; i++) {
        const struct lin_op *op = ops[i];
        if (op->kind == LIN_PUT && op->outcome == LIN_UNKNOWN &&
            !bsearch(&op->value, seen, n_seen, sizeof *seen, cmp_i64))
            continue;
        ops[out++] = op;
    }
    free(seen);
    return out;
}

static int cmp_key(const void *a, const void *b)
{
    const struct lin_op *x = *(const struct lin_op *const *)a,
                        *y = *(const struct lin_op *const *)b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->invoke_us < y->invoke_us ? -1 : (x->invoke_us > y->invoke_us ? 1 : 0);
}

int lin_check(const struct lin_history *h, uint64_t max_steps, struct lin_result *out)
{
    memset(out, 0, sizeof *out);
    out->linearizable = true;
    if (max_steps == 0)
        max_steps = LIN_DEFAULT_STEPS;
    const struct lin_op **keep = calloc(h->n ? h->n : 1, sizeof *keep);
    if (!keep)
        return NX_ERR_NOMEM;
    size_t n = 0;
    for (size_t i = 0; i < h->n; i++) {
        const struct lin_op *op = &h->ops[i];
        if (op->outcome == LIN_FAIL || (op->outcome == LIN_UNKNOWN && op->kind == LIN_GET))
            continue; /* no effect, or no observation */
        keep[n++] = op;
    }
    qsort(keep, n, sizeof *keep, cmp_key);
    int rc = NX_OK;
    for (size_t lo = 0; lo < n;) {
        size_t hi = lo;
        while (hi < n && keep[hi]->key == keep[lo]->key)
            hi++;
        out->keys_checked++;
        size_t m = prune_unobserved(keep + lo, hi - lo);
        out->ops_checked += m;
        int k = check_key(h, keep + lo, (uint32_t)m, max_steps, out);
        if (k < 0) {
            rc = k;
            break;
        }
        if (k == 2)
            out->budget_exceeded = true;
        if (k == 0) {
            out->linearizable = false;
            break;
        }
        lo = hi;
    }
    free(keep);
    return rc;
}
