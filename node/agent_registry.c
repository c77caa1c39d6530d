/*
 * agent_registry.c - the read-only registry view (agent_registry.h): a
 * RocksDB secondary over the node's database, a ledger_store over it, and
 * the agent queries the API answers with.
 */
#include <ctype.h>
#include <errno.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "agent_registry.h"
#include "raft_store.h"
#include "sandbox/sandbox.h"

struct agent_registry {
    struct ledger ledger_own;
    struct ledger *ledger; /* ledger_own, or borrowed */
    struct ledger_store store;
    rocksdb_options_t *opts;
    rocksdb_t *db; /* NULL when the view is over a borrowed ledger */
    rocksdb_column_family_handle_t *cf[2];
    rocksdb_readoptions_t *ro;
    uint64_t refresh_failures;
};

/* ---- the read-only store over the secondary ---------------------------------- */

static int view_error(const char *what, char *rerr)
{
    NX_WARN("registry_view_failed", "op=%s error=\"%s\"", what, rerr);
    rocksdb_free(rerr);
    return NX_ERR_IO;
}

static int view_get(void *ctx, const uint8_t *key, size_t key_len, uint8_t *val, size_t val_cap,
                    size_t *val_len)
{
    struct agent_registry *r = ctx;
    char *rerr = NULL;
    size_t vl = 0;
    char *v = rocksdb_get_cf(r->db, r->ro, r->cf[1], (const char *)key, key_len, &vl, &rerr);
    if (rerr)
        return view_error("get", rerr);
    if (v == NULL)
        return NX_ERR_NOT_FOUND;
    *val_len = vl;
    int rc = NX_OK;
    if (vl > val_cap)
        rc = NX_ERR_TOO_BIG;
    else if (vl)
        memcpy(val, v, vl);
    rocksdb_free(v);
    return rc;
}

static int view_iter(void *ctx, const uint8_t *prefix, size_t prefix_len, ledger_kv_fn fn,
                     void *arg)
{
    struct agent_registry *r = ctx;
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(r->db, r->ro, r->cf[1]);
    int rc = 0;
    for (rocksdb_iter_seek(it, (const char *)prefix, prefix_len); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        if (kl < prefix_len || memcmp(k, prefix, prefix_len) != 0)
            break;
        const char *v = rocksdb_iter_value(it, &vl);
        rc = fn(arg, (const uint8_t *)k, kl, (const uint8_t *)v, vl);
        if (rc != 0)
            break;
    }
    char *rerr = NULL;
    rocksdb_iter_get_error(it, &rerr);
    rocksdb_iter_destroy(it);
    if (rerr)
        return view_error("iterate", rerr);
    return rc < 0 ? rc : 0;
}

static int view_put(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *val,
                    size_t val_len)
{
    (void)ctx, (void)key, (void)key_len, (void)val, (void)val_len;
    return NX_ERR_PERM; /* a view: the raft host alone writes the ledger */
}

static int view_del(void *ctx, const uint8_t *key, size_t key_len)
{
    (void)ctx, (void)key, (void)key_len;
    return NX_ERR_PERM;
}

static int view_commit(void *ctx, const struct ledger_batch *batch)
{
    (void)ctx, (void)batch;
    return NX_ERR_PERM;
}

static const struct ledger_store_ops view_ops = {view_get, view_put, view_del, view_iter,
                                                 view_commit};

int agent_registry_open(struct agent_registry **out, const char *data_dir, char *err, size_t cap)
{
    char primary[4096], secondary[4096], parent[4096];
    snprintf(primary, sizeof primary, "%s/%s", data_dir, RAFT_STORE_DIR);
    snprintf(parent, sizeof parent, "%s/agents", data_dir);
    snprintf(secondary, sizeof secondary, "%s/%s", data_dir, AGENT_REGISTRY_VIEW_DIR);
    if ((mkdir(parent, 0700) != 0 && errno != EEXIST) ||
        (mkdir(secondary, 0700) != 0 && errno != EEXIST)) {
        snprintf(err, cap, "agents: cannot create %s: %s", secondary, strerror(errno));
        return NX_ERR_IO;
    }
    struct agent_registry *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NX_ERR_NOMEM;
    r->opts = rocksdb_options_create();
    rocksdb_options_set_max_open_files(r->opts, -1); /* a secondary needs every file open */
    rocksdb_options_set_info_log_level(r->opts, 4);
    rocksdb_options_set_keep_log_file_num(r->opts, 2);
    const char *names[2] = {"default", "ledger"};
    const rocksdb_options_t *cf_opts[2] = {r->opts, r->opts};
    char *rerr = NULL;
    r->db = rocksdb_open_as_secondary_column_families(r->opts, primary, secondary, 2, names,
                                                      cf_opts, r->cf, &rerr);
    if (r->db == NULL) {
        snprintf(err, cap, "agents: cannot open a registry view of %s: %s", primary,
                 rerr ? rerr : "unknown error");
        rocksdb_free(rerr);
        rocksdb_options_destroy(r->opts);
        free(r);
        return NX_ERR_IO;
    }
    r->ro = rocksdb_readoptions_create();
    r->store.ops = &view_ops;
    r->store.ctx = r;
    ledger_init(&r->ledger_own, &r->store);
    r->ledger = &r->ledger_own;
    *out = r;
    return NX_OK;
}

int agent_registry_open_on(struct agent_registry **out, struct ledger *ledger)
{
    struct agent_registry *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NX_ERR_NOMEM;
    r->ledger = ledger;
    *out = r;
    return NX_OK;
}

void agent_registry_close(struct agent_registry *r)
{
    if (r == NULL)
        return;
    if (r->db) {
        for (int i = 0; i < 2; i++)
            rocksdb_column_family_handle_destroy(r->cf[i]);
        rocksdb_close(r->db);
        rocksdb_readoptions_destroy(r->ro);
        rocksdb_options_destroy(r->opts);
    }
    free(r);
}

int agent_registry_refresh(struct agent_registry *r)
{
    if (r->db == NULL)
        return NX_OK;
    char *rerr = NULL;
    rocksdb_try_catch_up_with_primary(r->db, &rerr);
    if (rerr) {
        r->refresh_failures++;
        return view_error("catch_up", rerr);
    }
    return NX_OK;
}

struct ledger *agent_registry_ledger(struct agent_registry *r)
{
    return r->ledger;
}

/* ---- versions ----------------------------------------------------------------- */

int agent_version_cmp(const char *a, const char *b)
{
    while (*a && *b) {
        if (isdigit((unsigned char)*a) && isdigit((unsigned char)*b)) {
            while (*a == '0' && isdigit((unsigned char)a[1]))
                a++;
            while (*b == '0' && isdigit((unsigned char)b[1]))
                b++;
            size_t la = strspn(a, "0123456789"), lb = strspn(b, "0123456789");
            if (la != lb)
                return la < lb ? -1 : 1;
            int c = strncmp(a, b, la);
            if (c)
                return c < 0 ? -1 : 1;
            a += la;
            b += lb;
        } else {
            if (*a != *b)
                return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
            a++;
            b++;
        }
    }
    return *a ? 1 : *b ? -1 : 0;
}

void agent_version_clear(struct agent_version *v)
{
    free(v->manifest);
    v->manifest = NULL;
    v->manifest_len = 0;
}

struct pick_latest {
    const char *name;
    struct ledger_agent best;
    bool found;
};

static int on_pick_latest(void *arg, const struct ledger_agent *a)
{
    struct pick_latest *p = arg;
    if (strcmp(a->name, p->name) != 0 || a->deprecated)
        return 0;
    if (!p->found || agent_version_cmp(a->version, p->best.version) > 0) {
        p->best = *a;
        p->found = true;
    }
    return 0;
}

static int load_manifest(struct agent_registry *r, struct agent_version *out)
{
    out->manifest = malloc(LEDGER_MANIFEST_MAX_BYTES);
    if (out->manifest == NULL)
        return NX_ERR_NOMEM;
    int rc = ledger_agent_manifest_get(r->ledger, out->rec.name, out->rec.version, out->manifest,
                                       LEDGER_MANIFEST_MAX_BYTES, &out->manifest_len);
    if (rc != NX_OK)
        agent_version_clear(out);
    return rc;
}

int agent_registry_resolve(struct agent_registry *r, const char *spec, struct agent_version *out)
{
    memset(out, 0, sizeof *out);
    char name[LEDGER_STR_CAP];
    const char *at = strchr(spec, '@');
    size_t nlen = at ? (size_t)(at - spec) : strlen(spec);
    if (nlen == 0 || nlen > LEDGER_NAME_MAX)
        return NX_ERR_INVAL;
    memcpy(name, spec, nlen);
    name[nlen] = '\0';
    int rc;
    if (at) {
        rc = ledger_agent_get(r->ledger, name, at + 1, &out->rec);
    } else {
        struct pick_latest p = {.name = name};
        rc = ledger_agents_foreach(r->ledger, on_pick_latest, &p);
        if (rc == 0 && !p.found)
            rc = NX_ERR_NOT_FOUND;
        if (rc == 0)
            out->rec = p.best;
    }
    return rc == NX_OK ? load_manifest(r, out) : rc;
}

/* ---- JSON answers ---------------------------------------------------------------- */

static bool contains_ci(const char *hay, const char *needle)
{
    if (hay == NULL)
        return false;
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return true;
    return false;
}

static json_t *hex_json(const uint8_t *b, size_t n)
{
    char hex[2 * 64 + 1];
    nx_hex_encode(hex, b, n);
    return json_string(hex);
}

struct list_walk {
    struct agent_registry *r;
    const char *name;
    const char *capability;
    json_t *agents; /* object: name -> {versions: []} */
    uint8_t *manifest;
    size_t count;
};

/* One version's JSON; *matches tells whether a capability matched the filter. */
static json_t *version_json(struct list_walk *w, const struct ledger_agent *a, bool *matches)
{
    size_t mlen = 0;
    json_t *m = NULL;
    if (ledger_agent_manifest_get(w->r->ledger, a->name, a->version, w->manifest,
                                  LEDGER_MANIFEST_MAX_BYTES, &mlen) == NX_OK)
        m = json_loadb((const char *)w->manifest, mlen, 0, NULL);
    json_t *caps = json_array();
    *matches = w->capability == NULL;
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(m, "capabilities"), i, c)
    {
        const char *cn = json_string_value(json_object_get(c, "name"));
        const char *cd = json_string_value(json_object_get(c, "description"));
        if (w->capability && (contains_ci(cn, w->capability) || contains_ci(cd, w->capability)))
            *matches = true;
        json_array_append_new(caps, json_pack("{s:s?,s:s?}", "name", cn, "description", cd));
    }
    json_t *v = json_pack("{s:s,s:s,s:b,s:o,s:o,s:o,s:o}", "version", a->version, "tenant",
                          a->tenant, "deprecated", a->deprecated, "bundle_hash",
                          hex_json(a->bundle_hash, LEDGER_HASH_BYTES), "manifest_hash",
                          hex_json(a->manifest_hash, LEDGER_HASH_BYTES), "publisher",
                          hex_json(a->publisher, LEDGER_KEY_BYTES), "capabilities", caps);
    if (m) {
        static const char *const keep[] = {"description", "kind", "resources", "timeout_ms"};
        for (size_t k = 0; k < NX_ARRAY_LEN(keep); k++)
            if (json_object_get(m, keep[k]))
                json_object_set(v, keep[k], json_object_get(m, keep[k]));
        if (w->name)
            json_object_set(v, "manifest", m);
    }
    json_decref(m);
    return v;
}

static int on_list(void *arg, const struct ledger_agent *a)
{
    struct list_walk *w = arg;
    if (w->name && strcmp(a->name, w->name) != 0)
        return 0;
    json_t *entry = json_object_get(w->agents, a->name);
    if (entry == NULL) {
        if (w->count == AGENT_REGISTRY_MAX_AGENTS)
            return 1;
        entry = json_pack("{s:s,s:[],s:b}", "name", a->name, "versions", "matches", false);
        json_object_set_new(w->agents, a->name, entry);
        w->count++;
    }
    json_t *versions = json_object_get(entry, "versions");
    if (json_array_size(versions) == AGENT_REGISTRY_MAX_VERSIONS)
        return 0;
    bool matches;
    json_array_append_new(versions, version_json(w, a, &matches));
    if (matches)
        json_object_set_new(entry, "matches", json_true());
    const char *latest = json_string_value(json_object_get(entry, "latest"));
    if (!a->deprecated && (latest == NULL || agent_version_cmp(a->version, latest) > 0))
        json_object_set_new(entry, "latest", json_string(a->version));
    return 0;
}

json_t *agent_registry_json(struct agent_registry *r, const char *name, const char *capability,
                            unsigned *status)
{
    struct list_walk w = {.r = r, .name = name, .capability = capability};
    w.agents = json_object();
    w.manifest = malloc(LEDGER_MANIFEST_MAX_BYTES);
    if (w.manifest == NULL || ledger_agents_foreach(r->ledger, on_list, &w) < 0) {
        free(w.manifest);
        json_decref(w.agents);
        *status = 500;
        return json_pack("{s:s}", "error", "cannot read the registry");
    }
    free(w.manifest);
    json_t *list = json_array();
    const char *key;
    json_t *entry;
    json_object_foreach(w.agents, key, entry)
    {
        if (json_is_true(json_object_get(entry, "matches"))) {
            json_object_del(entry, "matches");
            json_array_append(list, entry);
        }
    }
    json_decref(w.agents);
    if (name) {
        json_t *one = json_incref(json_array_get(list, 0));
        json_decref(list);
        *status = one ? 200 : 404;
        if (one == NULL)
            return json_pack("{s:s}", "error", "no such agent");
        return one;
    }
    *status = 200;
    return json_pack("{s:o}", "agents", list);
}
