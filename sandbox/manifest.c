/*
 * manifest.c - parsing and validating a bundle's manifest.json (jansson).
 *
 * A manifest comes from whoever published the bundle, so every field is
 * checked and a refusal names the field: "manifest: resources.memory_mb:
 * must be a positive integer". Unknown keys are refused too: a permission
 * or resource this node does not understand must not be silently ignored.
 * docs/sandbox.md is the reference for the fields and their defaults.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sandbox/internal.h"

#define FAIL(field, ...)                                                                           \
    do {                                                                                           \
        char detail_[160];                                                                         \
        snprintf(detail_, sizeof detail_, __VA_ARGS__);                                            \
        sbx_errf(err, err_len, "manifest: %s: %s", field, detail_);                                \
        return NX_ERR_INVAL;                                                                       \
    } while (0)

const char *sbx_kind_name(enum sbx_kind kind)
{
    switch (kind) {
    case SBX_KIND_STATELESS:
        return "stateless";
    case SBX_KIND_STATEFUL:
        return "stateful";
    case SBX_KIND_LONG_RUNNING:
        return "long-running";
    }
    return "unknown";
}

static int only_keys(json_t *obj, const char *where, const char *const *allowed, char *err,
                     size_t err_len)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        bool ok = false;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = strcmp(*a, key) == 0;
        if (!ok) {
            char field[128];
            snprintf(field, sizeof field, "%s%s%s", where, *where ? "." : "", key);
            FAIL(field, "unknown field");
        }
    }
    return 0;
}

/* A required (or optional, when def != NULL) string of 1..max bytes. */
static int get_string(json_t *obj, const char *key, const char *field, size_t max, const char *def,
                      char **out, char *err, size_t err_len)
{
    json_t *v = json_object_get(obj, key);
    if (!v) {
        if (!def)
            FAIL(field, "is required");
        *out = strdup(def);
        return *out ? 0 : NX_ERR_NOMEM;
    }
    if (!json_is_string(v))
        FAIL(field, "must be a string");
    size_t len = json_string_length(v);
    if (len == 0 || len > max)
        FAIL(field, "must be 1 to %zu bytes", max);
    if (strlen(json_string_value(v)) != len)
        FAIL(field, "must not contain NUL");
    *out = strdup(json_string_value(v));
    return *out ? 0 : NX_ERR_NOMEM;
}

/* An optional positive integer in [1, max]; absent leaves *out alone. */
static int get_positive(json_t *obj, const char *key, const char *field, uint64_t max,
                        uint64_t *out, bool *present, char *err, size_t err_len)
{
    json_t *v = json_object_get(obj, key);
    if (present)
        *present = v != NULL;
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) <= 0)
        FAIL(field, "must be a positive integer");
    if ((uint64_t)json_integer_value(v) > max)
        FAIL(field, "must be at most %llu", (unsigned long long)max);
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static bool valid_name(const char *s)
{
    for (; *s; s++) {
        bool ok = (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' ||
                  *s == '.';
        if (!ok)
            return false;
    }
    return true;
}

static int parse_entrypoint(json_t *root, struct sbx_manifest *m, char *err, size_t err_len)
{
    json_t *ep = json_object_get(root, "entrypoint");
    if (!ep)
        FAIL("entrypoint", "is required");
    if (!json_is_array(ep) || json_array_size(ep) == 0)
        FAIL("entrypoint", "must be a non-empty array of strings");
    if (json_array_size(ep) > SBX_ARGV_MAX)
        FAIL("entrypoint", "must have at most %d words", SBX_ARGV_MAX);
    size_t i;
    json_t *w;
    json_array_foreach(ep, i, w)
    {
        char field[48];
        snprintf(field, sizeof field, "entrypoint[%zu]", i);
        if (!json_is_string(w) || json_string_length(w) == 0 ||
            json_string_length(w) >= SBX_PATH_MAX ||
            strlen(json_string_value(w)) != json_string_length(w))
            FAIL(field, "must be a non-empty string shorter than %d bytes", SBX_PATH_MAX);
        const char *s = json_string_value(w);
        if (i == 0) {
            if (strstr(s, "..") &&
                (strstr(s, "/../") || strncmp(s, "../", 3) == 0 || strcmp(s, "..") == 0 ||
                 (strlen(s) >= 3 && strcmp(s + strlen(s) - 3, "/..") == 0)))
                FAIL(field, "must not contain ..");
            if (s[0] == '/' && strncmp(s, "/usr/", 5) != 0 && strncmp(s, "/bin/", 5) != 0 &&
                strncmp(s, "/agent/", 7) != 0)
                FAIL(field, "absolute paths must be under /usr/, /bin/ or /agent/");
        }
        m->entrypoint[i] = strdup(s);
        if (!m->entrypoint[i])
            return NX_ERR_NOMEM;
        m->entrypoint_len = i + 1;
    }
    return 0;
}

static int parse_resources(json_t *root, struct sbx_manifest *m, char *err, size_t err_len)
{
    m->cpu_millicores = SBX_DEFAULT_CPU_MILLICORES;
    m->memory_bytes = SBX_DEFAULT_MEMORY_BYTES;
    json_t *res = json_object_get(root, "resources");
    if (!res)
        return 0;
    if (!json_is_object(res))
        FAIL("resources", "must be an object");
    static const char *const keys[] = {"cpu_millicores", "memory_bytes", "memory_mb", "gpus", NULL};
    int rc = only_keys(res, "resources", keys, err, err_len);
    if (rc < 0)
        return rc;
    uint64_t v = m->cpu_millicores;
    rc = get_positive(res, "cpu_millicores", "resources.cpu_millicores", SBX_CPU_MAX_MILLICORES, &v,
                      NULL, err, err_len);
    if (rc < 0)
        return rc;
    m->cpu_millicores = (uint32_t)v;
    bool has_bytes, has_mb;
    rc = get_positive(res, "memory_bytes", "resources.memory_bytes", SBX_MEMORY_MAX_BYTES,
                      &m->memory_bytes, &has_bytes, err, err_len);
    if (rc < 0)
        return rc;
    v = 0;
    rc = get_positive(res, "memory_mb", "resources.memory_mb", SBX_MEMORY_MAX_BYTES >> 20, &v,
                      &has_mb, err, err_len);
    if (rc < 0)
        return rc;
    if (has_bytes && has_mb)
        FAIL("resources.memory_mb", "give memory_bytes or memory_mb, not both");
    if (has_mb)
        m->memory_bytes = v << 20;
    if (m->memory_bytes < (4u << 20))
        FAIL(has_mb ? "resources.memory_mb" : "resources.memory_bytes", "must be at least 4 MiB");
    json_t *g = json_object_get(res, "gpus");
    if (g) {
        if (!json_is_integer(g) || json_integer_value(g) < 0 ||
            json_integer_value(g) > (json_int_t)SBX_GPUS_MAX)
            FAIL("resources.gpus", "must be an integer from 0 to %u", SBX_GPUS_MAX);
        m->gpus = (uint32_t)json_integer_value(g);
    }
    return 0;
}

static int parse_permissions(json_t *root, struct sbx_manifest *m, char *err, size_t err_len)
{
    json_t *perm = json_object_get(root, "permissions");
    if (!perm)
        return 0;
    if (!json_is_object(perm))
        FAIL("permissions", "must be an object");
    static const char *const keys[] = {"network", NULL};
    int rc = only_keys(perm, "permissions", keys, err, err_len);
    if (rc < 0)
        return rc;
    json_t *net = json_object_get(perm, "network");
    if (net) {
        if (!json_is_boolean(net))
            FAIL("permissions.network", "must be true or false");
        m->network = json_is_true(net);
    }
    return 0;
}

static int parse_capability(json_t *c, size_t i, struct sbx_capability *cap, char *err,
                            size_t err_len)
{
    char field[64];
    snprintf(field, sizeof field, "capabilities[%zu]", i);
    if (!json_is_object(c))
        FAIL(field, "must be an object");
    static const char *const keys[] = {"name", "description", "input_schema", "output_schema",
                                       NULL};
    int rc = only_keys(c, field, keys, err, err_len);
    if (rc < 0)
        return rc;
    snprintf(field, sizeof field, "capabilities[%zu].name", i);
    rc = get_string(c, "name", field, SBX_NAME_MAX, NULL, &cap->name, err, err_len);
    if (rc < 0)
        return rc;
    if (json_object_get(c, "description")) {
        snprintf(field, sizeof field, "capabilities[%zu].description", i);
        rc = get_string(c, "description", field, SBX_DESCRIPTION_MAX, NULL, &cap->description, err,
                        err_len);
        if (rc < 0)
            return rc;
    }
    static const char *const schemas[] = {"input_schema", "output_schema"};
    for (int s = 0; s < 2; s++) {
        json_t *sch = json_object_get(c, schemas[s]);
        if (!sch)
            continue;
        snprintf(field, sizeof field, "capabilities[%zu].%s", i, schemas[s]);
        if (!json_is_object(sch))
            FAIL(field, "must be an object (a JSON schema)");
        json_incref(sch);
        if (s == 0)
            cap->input_schema = sch;
        else
            cap->output_schema = sch;
    }
    return 0;
}

static int parse_capabilities(json_t *root, struct sbx_manifest *m, char *err, size_t err_len)
{
    json_t *caps = json_object_get(root, "capabilities");
    if (!caps)
        return 0;
    if (!json_is_array(caps))
        FAIL("capabilities", "must be an array");
    if (json_array_size(caps) > SBX_CAPS_MAX)
        FAIL("capabilities", "must have at most %d entries", SBX_CAPS_MAX);
    if (json_array_size(caps) == 0)
        return 0;
    m->caps = calloc(json_array_size(caps), sizeof *m->caps);
    if (!m->caps)
        return NX_ERR_NOMEM;
    size_t i;
    json_t *c;
    json_array_foreach(caps, i, c)
    {
        m->caps_len = i + 1;
        int rc = parse_capability(c, i, &m->caps[i], err, err_len);
        if (rc < 0)
            return rc;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(m->caps[j].name, m->caps[i].name) == 0) {
                char field[64];
                snprintf(field, sizeof field, "capabilities[%zu].name", i);
                FAIL(field, "duplicate name %s", m->caps[i].name);
            }
        }
    }
    return 0;
}

static int parse_root(json_t *root, struct sbx_manifest *m, char *err, size_t err_len)
{
    if (!json_is_object(root))
        FAIL("(top level)", "must be a JSON object");
    static const char *const keys[] = {"name",        "version",     "kind",         "entrypoint",
                                       "resources",   "permissions", "capabilities", "timeout_ms",
                                       "description", NULL};
    int rc = only_keys(root, "", keys, err, err_len);
    if (rc < 0)
        return rc;
    rc = get_string(root, "name", "name", SBX_NAME_MAX, NULL, &m->name, err, err_len);
    if (rc < 0)
        return rc;
    if (!valid_name(m->name))
        FAIL("name", "must use only a-z, 0-9, '-', '_' and '.'");
    rc = get_string(root, "version", "version", SBX_VERSION_MAX, NULL, &m->version, err, err_len);
    if (rc < 0)
        return rc;
    json_t *desc = json_object_get(root, "description");
    if (desc && !json_is_string(desc))
        FAIL("description", "must be a string");
    json_t *kind = json_object_get(root, "kind");
    if (!kind)
        FAIL("kind", "is required");
    const char *ks = json_is_string(kind) ? json_string_value(kind) : "";
    if (strcmp(ks, "stateless") == 0)
        m->kind = SBX_KIND_STATELESS;
    else if (strcmp(ks, "stateful") == 0)
        m->kind = SBX_KIND_STATEFUL;
    else if (strcmp(ks, "long-running") == 0)
        m->kind = SBX_KIND_LONG_RUNNING;
    else
        FAIL("kind", "must be \"stateless\", \"stateful\" or \"long-running\"");
    rc = parse_entrypoint(root, m, err, err_len);
    if (rc < 0)
        return rc;
    rc = parse_resources(root, m, err, err_len);
    if (rc < 0)
        return rc;
    rc = parse_permissions(root, m, err, err_len);
    if (rc < 0)
        return rc;
    rc = parse_capabilities(root, m, err, err_len);
    if (rc < 0)
        return rc;
    m->timeout_ms = SBX_DEFAULT_TIMEOUT_MS;
    return get_positive(root, "timeout_ms", "timeout_ms", SBX_TIMEOUT_MAX_MS, &m->timeout_ms, NULL,
                        err, err_len);
}

int sbx_manifest_parse(const char *json, size_t len, struct sbx_manifest *out, char *err,
                       size_t err_len)
{
    memset(out, 0, sizeof *out);
    if (len > SBX_MANIFEST_MAX_BYTES) {
        sbx_errf(err, err_len, "manifest: larger than %u bytes", SBX_MANIFEST_MAX_BYTES);
        return NX_ERR_TOO_BIG;
    }
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        sbx_errf(err, err_len, "manifest: not valid JSON: line %d: %s", jerr.line, jerr.text);
        return NX_ERR_DECODE;
    }
    int rc = parse_root(root, out, err, err_len);
    json_decref(root);
    if (rc < 0)
        sbx_manifest_free(out);
    return rc;
}

int sbx_manifest_load(const char *bundle_dir, struct sbx_manifest *out, char *err, size_t err_len)
{
    memset(out, 0, sizeof *out);
    char path[SBX_PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/manifest.json", bundle_dir) >= sizeof path) {
        sbx_errf(err, err_len, "manifest: bundle path too long");
        return NX_ERR_TOO_BIG;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        sbx_errf(err, err_len, "manifest: open %s: %s", path, strerror(errno));
        return errno == ENOENT ? NX_ERR_NOT_FOUND : NX_ERR_IO;
    }
    char *buf = malloc(SBX_MANIFEST_MAX_BYTES + 1);
    if (!buf) {
        close(fd);
        return NX_ERR_NOMEM;
    }
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, SBX_MANIFEST_MAX_BYTES + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len > SBX_MANIFEST_MAX_BYTES)
            break;
    }
    close(fd);
    int rc = sbx_manifest_parse(buf, len, out, err, err_len);
    free(buf);
    return rc;
}

void sbx_manifest_free(struct sbx_manifest *m)
{
    free(m->name);
    free(m->version);
    for (size_t i = 0; i < m->entrypoint_len; i++)
        free(m->entrypoint[i]);
    for (size_t i = 0; i < m->caps_len; i++) {
        free(m->caps[i].name);
        free(m->caps[i].description);
        json_decref(m->caps[i].input_schema);
        json_decref(m->caps[i].output_schema);
    }
    free(m->caps);
    memset(m, 0, sizeof *m);
}
