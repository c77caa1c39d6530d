/*
 * agent_registry.c - the agent questions asked of the registry
 * (agent_registry.h): resolve, list, show, search.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent_registry.h"
#include "sandbox/sandbox.h"

struct agent_registry {
    struct ledger *ledger; /* borrowed */
};

int agent_registry_open(struct agent_registry **out, struct ledger *ledger)
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
    free(r);
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
