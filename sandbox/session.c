/*
 * session.c - stateful sessions: the agent's context travels in the
 * protocol ("context" in the request and the reply) and is persisted by the
 * node between calls through struct sbx_session_store, so a session survives
 * the agent process and the node process (and, later, moves with a
 * checkpoint to another node). Also the in-memory store used by tests.
 */
#include <stdlib.h>
#include <string.h>

#include "sandbox/internal.h"

static bool valid_session_id(const char *id)
{
    size_t len = strlen(id);
    if (len == 0 || len > SBX_SESSION_ID_MAX)
        return false;
    for (const char *s = id; *s; s++)
        if (*s <= ' ' || *s > '~' || *s == '/')
            return false;
    return true;
}

int sbx_session_call(struct sbx_session_store *store, const char *session_id,
                     const struct sbx_config *cfg, json_t *input, struct sbx_reply *reply,
                     struct sbx_usage *usage, char *err, size_t err_len)
{
    memset(reply, 0, sizeof *reply);
    memset(usage, 0, sizeof *usage);
    if (!valid_session_id(session_id)) {
        sbx_errf(err, err_len, "session: bad session id");
        return NX_ERR_INVAL;
    }
    char *saved = NULL;
    json_t *context = NULL;
    int rc = store->ops->load(store->impl, session_id, &saved);
    if (rc == 0) {
        json_error_t jerr;
        context = json_loads(saved, 0, &jerr);
        free(saved);
        if (!context) {
            sbx_errf(err, err_len, "session: stored context does not parse: %s", jerr.text);
            return NX_ERR_CORRUPT;
        }
    } else if (rc != NX_ERR_NOT_FOUND) {
        sbx_errf(err, err_len, "session: load: %s", nx_strerror(rc));
        return rc;
    }
    rc = sbx_run_once(cfg, input, context, reply, usage, err, err_len);
    json_decref(context);
    if (rc < 0 || reply->error || !reply->context)
        return rc; /* the old context stays */
    char *text = json_dumps(reply->context, JSON_COMPACT);
    if (!text)
        return NX_ERR_NOMEM;
    if (strlen(text) > SBX_CONTEXT_MAX_BYTES) {
        free(text);
        sbx_errf(err, err_len, "session: context exceeds %u bytes", SBX_CONTEXT_MAX_BYTES);
        return NX_ERR_TOO_BIG;
    }
    rc = store->ops->save(store->impl, session_id, text);
    free(text);
    if (rc < 0)
        sbx_errf(err, err_len, "session: save: %s", nx_strerror(rc));
    return rc;
}

void sbx_session_store_close(struct sbx_session_store *store)
{
    if (store->ops)
        store->ops->close(store->impl);
    memset(store, 0, sizeof *store);
}

/* ---- in-memory store ---------------------------------------------------- */

struct mem_entry {
    struct mem_entry *next;
    char *id, *json; /* owned */
};

struct mem_store {
    struct mem_entry *head;
};

static struct mem_entry **mem_find(struct mem_store *m, const char *id)
{
    struct mem_entry **e = &m->head;
    while (*e && strcmp((*e)->id, id) != 0)
        e = &(*e)->next;
    return e;
}

static int mem_load(void *impl, const char *id, char **json)
{
    struct mem_entry **e = mem_find(impl, id);
    if (!*e)
        return NX_ERR_NOT_FOUND;
    *json = strdup((*e)->json);
    return *json ? 0 : NX_ERR_NOMEM;
}

static int mem_save(void *impl, const char *id, const char *json)
{
    struct mem_entry **e = mem_find(impl, id);
    char *copy = strdup(json);
    if (!copy)
        return NX_ERR_NOMEM;
    if (*e) {
        free((*e)->json);
        (*e)->json = copy;
        return 0;
    }
    struct mem_entry *n = calloc(1, sizeof *n);
    if (!n || !(n->id = strdup(id))) {
        free(n);
        free(copy);
        return NX_ERR_NOMEM;
    }
    n->json = copy;
    *e = n;
    return 0;
}

static int mem_remove(void *impl, const char *id)
{
    struct mem_entry **e = mem_find(impl, id);
    if (!*e)
        return NX_ERR_NOT_FOUND;
    struct mem_entry *dead = *e;
    *e = dead->next;
    free(dead->id);
    free(dead->json);
    free(dead);
    return 0;
}

static void mem_close(void *impl)
{
    struct mem_store *m = impl;
    while (m->head)
        (void)mem_remove(m, m->head->id);
    free(m);
}

static const struct sbx_session_store_ops mem_ops = {mem_load, mem_save, mem_remove, mem_close};

int sbx_session_store_mem_open(struct sbx_session_store *out)
{
    struct mem_store *m = calloc(1, sizeof *m);
    if (!m)
        return NX_ERR_NOMEM;
    out->ops = &mem_ops;
    out->impl = m;
    return 0;
}
