/*
 * raft_mem.c - an in-memory model of a node's durable Raft storage.
 *
 * Used by the unit tests and the simulator in place of RocksDB. It keeps
 * exactly what the Ready contract says the host must make durable: the hard
 * state, the last snapshot and the log after it. Whatever the core holds and
 * has not handed out through raft_ready() (and been persisted here) is lost
 * when the simulator "crashes" a node by destroying its struct raft.
 */
#include <stdlib.h>
#include <string.h>

#include "consensus/raft.h"

struct raft_mem {
    struct raft_hard_state hs;
    struct raft_snapshot snap; /* data owned */
    struct raft_entry *ents;   /* (snap.index, snap.index + n]; data owned */
    size_t n;
    size_t cap;
};

int raft_mem_create(const struct raft_conf *bootstrap, struct raft_mem **out)
{
    struct raft_mem *m = calloc(1, sizeof *m);
    if (!m)
        return NX_ERR_NOMEM;
    if (bootstrap)
        m->snap.conf = *bootstrap;
    *out = m;
    return NX_OK;
}

static void drop_from(struct raft_mem *m, uint64_t index)
{
    while (m->n > 0 && m->ents[m->n - 1].index >= index) {
        m->n--;
        free((void *)m->ents[m->n].data);
    }
}

static void drop_through(struct raft_mem *m, uint64_t index)
{
    size_t k = 0;
    while (k < m->n && m->ents[k].index <= index) {
        free((void *)m->ents[k].data);
        k++;
    }
    memmove(m->ents, m->ents + k, (m->n - k) * sizeof *m->ents);
    m->n -= k;
}

void raft_mem_destroy(struct raft_mem *m)
{
    if (!m)
        return;
    drop_from(m, 0);
    free(m->ents);
    free((void *)m->snap.data);
    free(m);
}

static int set_snapshot(struct raft_mem *m, const struct raft_snapshot *s)
{
    uint8_t *copy = NULL;
    if (s->len) {
        copy = malloc(s->len);
        if (!copy)
            return NX_ERR_NOMEM;
        memcpy(copy, s->data, s->len);
    }
    free((void *)m->snap.data);
    m->snap = *s;
    m->snap.data = copy;
    return NX_OK;
}

int raft_mem_persist(struct raft_mem *m, const struct raft_ready *rd)
{
    if (rd->snapshot) {
        int rc = set_snapshot(m, rd->snapshot);
        if (rc != NX_OK)
            return rc;
        drop_from(m, 0);
    }
    if (rd->n_entries > 0) {
        drop_from(m, rd->entries[0].index);
        if (m->n + rd->n_entries > m->cap) {
            size_t cap = (m->n + rd->n_entries) * 2;
            struct raft_entry *e = realloc(m->ents, cap * sizeof *e);
            if (!e)
                return NX_ERR_NOMEM;
            m->ents = e;
            m->cap = cap;
        }
        for (size_t i = 0; i < rd->n_entries; i++) {
            struct raft_entry e = rd->entries[i];
            NX_ASSERT(e.index == m->snap.index + m->n + 1);
            uint8_t *copy = NULL;
            if (e.len) {
                copy = malloc(e.len);
                if (!copy)
                    return NX_ERR_NOMEM;
                memcpy(copy, e.data, e.len);
            }
            e.data = copy;
            m->ents[m->n++] = e;
        }
    }
    if (rd->has_hard_state)
        m->hs = rd->hard_state;
    return NX_OK;
}

int raft_mem_compact(struct raft_mem *m, uint64_t index, const void *data, size_t len)
{
    if (index <= m->snap.index || index > m->snap.index + m->n)
        return NX_ERR_INVAL;
    struct raft_snapshot s = m->snap;
    s.index = index;
    s.term = m->ents[index - m->snap.index - 1].term;
    for (size_t k = 0; k < m->n && m->ents[k].index <= index; k++) {
        const struct raft_entry *e = &m->ents[k];
        if (e->type == RAFT_ENTRY_CONF && raft_conf_decode(e->data, e->len, &s.conf) != NX_OK)
            return NX_ERR_CORRUPT;
    }
    s.data = data;
    s.len = (uint32_t)len;
    int rc = set_snapshot(m, &s);
    if (rc != NX_OK)
        return rc;
    drop_through(m, index);
    return NX_OK;
}

void raft_mem_boot(const struct raft_mem *m, struct raft_boot *out)
{
    memset(out, 0, sizeof *out);
    out->hard_state = m->hs;
    out->snapshot = m->snap;
    out->entries = m->ents;
    out->n_entries = m->n;
}

uint64_t raft_mem_last_index(const struct raft_mem *m)
{
    return m->snap.index + m->n;
}
