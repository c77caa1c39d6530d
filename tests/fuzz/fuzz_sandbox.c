/*
 * fuzz_sandbox.c - libFuzzer harness for what the sandbox reads from others:
 * a published bundle's manifest (sbx_manifest_parse) and the lines an agent
 * prints on its stdout (sbx_call's reply parser).
 *
 * data[0] bit0 picks the target:
 *
 *   clear  the rest is manifest.json text.
 *   set    the rest is what the agent printed; data[0] >> 1 & 3 picks the
 *          request id (1..4) that the reply must carry. There is no public
 *          entry point for the reply parser, so the harness hands sbx_call
 *          a struct sbx_run (sandbox/internal.h) with no process: stdin goes
 *          to /dev/null and stdout is already closed, its bytes buffered.
 *
 * Invariants (abort = a finding):
 *   manifest: the result is 0 or NX_ERR_INVAL / DECODE / TOO_BIG, with an
 *     error text starting "manifest: " on failure; an accepted manifest
 *     honours every documented limit (name charset and length, version,
 *     entrypoint count, length and path rules, resources, timeout, unique
 *     capability names) and, written back as JSON, parses to the same manifest.
 *   reply: 0 only with exactly one of output and error; otherwise
 *     NX_ERR_DECODE or NX_ERR_UNAVAILABLE (no reply before the end), with an
 *     error text starting "protocol: ".
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "sandbox/internal.h"
#include "sandbox/sandbox.h"
#include "tests/fuzz/fuzz_harness.h"

#define MODE_REPLY 0x1u

static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > SBX_NAME_MAX)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' ||
              *s == '.'))
            return false;
    return true;
}

static bool has_dotdot_component(const char *s)
{
    for (const char *p = s; (p = strstr(p, "..")) != NULL; p++)
        if ((p == s || p[-1] == '/') && (p[2] == '\0' || p[2] == '/'))
            return true;
    return false;
}

static void check_limits(const struct sbx_manifest *m)
{
    NX_ASSERT(name_ok(m->name));
    NX_ASSERT(m->version && strlen(m->version) >= 1 && strlen(m->version) <= SBX_VERSION_MAX);
    NX_ASSERT(m->kind <= SBX_KIND_LONG_RUNNING);
    NX_ASSERT(m->entrypoint_len >= 1 && m->entrypoint_len <= SBX_ARGV_MAX);
    NX_ASSERT(m->entrypoint[m->entrypoint_len] == NULL);
    for (size_t i = 0; i < m->entrypoint_len; i++)
        NX_ASSERT(strlen(m->entrypoint[i]) >= 1 && strlen(m->entrypoint[i]) < SBX_PATH_MAX);
    const char *prog = m->entrypoint[0];
    NX_ASSERT(!has_dotdot_component(prog));
    NX_ASSERT(prog[0] != '/' || strncmp(prog, "/usr/", 5) == 0 || strncmp(prog, "/bin/", 5) == 0 ||
              strncmp(prog, "/agent/", 7) == 0);
    NX_ASSERT(m->cpu_millicores >= 1 && m->cpu_millicores <= SBX_CPU_MAX_MILLICORES);
    NX_ASSERT(m->memory_bytes >= (4u << 20) && m->memory_bytes <= SBX_MEMORY_MAX_BYTES);
    NX_ASSERT(m->gpus <= SBX_GPUS_MAX);
    NX_ASSERT(m->timeout_ms >= 1 && m->timeout_ms <= SBX_TIMEOUT_MAX_MS);
    NX_ASSERT(m->caps_len <= SBX_CAPS_MAX);
    for (size_t i = 0; i < m->caps_len; i++) {
        const struct sbx_capability *c = &m->caps[i];
        NX_ASSERT(c->name && strlen(c->name) >= 1 && strlen(c->name) <= SBX_NAME_MAX);
        NX_ASSERT(!c->description ||
                  (strlen(c->description) >= 1 && strlen(c->description) <= SBX_DESCRIPTION_MAX));
        for (size_t j = 0; j < i; j++)
            NX_ASSERT(strcmp(m->caps[j].name, c->name) != 0);
    }
}

/* m as manifest JSON text (malloc'd, owned by the caller). */
static char *manifest_to_json(const struct sbx_manifest *m)
{
    json_t *ep = json_array(), *caps = json_array();
    NX_ASSERT(ep && caps);
    for (size_t i = 0; i < m->entrypoint_len; i++)
        NX_ASSERT(json_array_append_new(ep, json_string(m->entrypoint[i])) == 0);
    for (size_t i = 0; i < m->caps_len; i++) {
        const struct sbx_capability *c = &m->caps[i];
        json_t *o = json_pack("{s:s}", "name", c->name);
        NX_ASSERT(o);
        if (c->description)
            NX_ASSERT(json_object_set_new(o, "description", json_string(c->description)) == 0);
        if (c->input_schema)
            NX_ASSERT(json_object_set(o, "input_schema", c->input_schema) == 0);
        if (c->output_schema)
            NX_ASSERT(json_object_set(o, "output_schema", c->output_schema) == 0);
        NX_ASSERT(json_array_append_new(caps, o) == 0);
    }
    json_t *root = json_pack(
        "{s:s, s:s, s:s, s:o, s:{s:I, s:I, s:I}, s:{s:b}, s:o, s:I}", "name", m->name, "version",
        m->version, "kind", sbx_kind_name(m->kind), "entrypoint", ep, "resources", "cpu_millicores",
        (json_int_t)m->cpu_millicores, "memory_bytes", (json_int_t)m->memory_bytes, "gpus",
        (json_int_t)m->gpus, "permissions", "network", m->network, "capabilities", caps,
        "timeout_ms", (json_int_t)m->timeout_ms);
    NX_ASSERT(root);
    char *text = json_dumps(root, JSON_COMPACT);
    NX_ASSERT(text);
    json_decref(root);
    return text;
}

static bool str_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool schema_eq(json_t *a, json_t *b)
{
    return (!a && !b) || (a && b && json_equal(a, b));
}

static void check_same(const struct sbx_manifest *a, const struct sbx_manifest *b)
{
    NX_ASSERT(str_eq(a->name, b->name) && str_eq(a->version, b->version) && a->kind == b->kind);
    NX_ASSERT(a->entrypoint_len == b->entrypoint_len);
    for (size_t i = 0; i < a->entrypoint_len; i++)
        NX_ASSERT(str_eq(a->entrypoint[i], b->entrypoint[i]));
    NX_ASSERT(a->cpu_millicores == b->cpu_millicores && a->memory_bytes == b->memory_bytes &&
              a->gpus == b->gpus && a->network == b->network && a->timeout_ms == b->timeout_ms);
    NX_ASSERT(a->caps_len == b->caps_len);
    for (size_t i = 0; i < a->caps_len; i++) {
        NX_ASSERT(str_eq(a->caps[i].name, b->caps[i].name));
        NX_ASSERT(str_eq(a->caps[i].description, b->caps[i].description));
        NX_ASSERT(schema_eq(a->caps[i].input_schema, b->caps[i].input_schema));
        NX_ASSERT(schema_eq(a->caps[i].output_schema, b->caps[i].output_schema));
    }
}

static void manifest_mode(const uint8_t *p, size_t len)
{
    struct sbx_manifest m, again;
    char err[SBX_ERR_MAX];
    err[0] = '\0';
    int rc = sbx_manifest_parse((const char *)p, len, &m, err, sizeof err);
    NX_ASSERT(rc == NX_OK || rc == NX_ERR_INVAL || rc == NX_ERR_DECODE || rc == NX_ERR_TOO_BIG);
    NX_ASSERT(memchr(err, 0, sizeof err) != NULL);
    if (rc != NX_OK) {
        NX_ASSERT(strncmp(err, "manifest: ", 10) == 0);
        return;
    }
    check_limits(&m);
    char *text = manifest_to_json(&m);
    rc = sbx_manifest_parse(text, strlen(text), &again, err, sizeof err);
    NX_ASSERT(rc == NX_OK);
    check_same(&m, &again);
    free(text);
    sbx_manifest_free(&again);
    sbx_manifest_free(&m);
}

static void reply_mode(uint8_t flags, const uint8_t *p, size_t len)
{
    if (len >= SBX_FRAME_MAX_BYTES)
        return; /* sbx_call would kill the (absent) process */
    struct sbx_run run;
    memset(&run, 0, sizeof run);
    run.pid = -1;
    run.pidfd = -1;
    run.stdout_r = -1;
    run.stderr_r = -1;
    run.stdin_w = open("/dev/null", O_WRONLY | O_CLOEXEC);
    NX_ASSERT(run.stdin_w >= 0);
    run.out = malloc(len + 1);
    NX_ASSERT(run.out);
    if (len)
        memcpy(run.out, p, len);
    run.out[len] = '\0';
    run.out_len = len;
    run.out_cap = len + 1;
    run.out_total = len;
    run.exited = true;

    json_t *input = json_pack("{s:i}", "x", 1);
    NX_ASSERT(input);
    struct sbx_reply reply;
    char err[SBX_ERR_MAX];
    err[0] = '\0';
    int rc = sbx_call(&run, 1 + (flags >> 1 & 3), input, NULL, 0, &reply, err, sizeof err);
    NX_ASSERT(memchr(err, 0, sizeof err) != NULL);
    if (rc == NX_OK)
        NX_ASSERT((reply.output != NULL) != (reply.error != NULL));
    else
        NX_ASSERT((rc == NX_ERR_DECODE || rc == NX_ERR_UNAVAILABLE) &&
                  strncmp(err, "protocol: ", 10) == 0);
    sbx_reply_clear(&reply);
    json_decref(input);
    close(run.stdin_w);
    free(run.out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool quiet;
    if (!quiet) {
        nx_log_set_level(NX_LOG_ERROR); /* agent log lines and other ids are logged */
        quiet = true;
    }
    if (size == 0)
        return 0;
    if (data[0] & MODE_REPLY)
        reply_mode(data[0], data + 1, size - 1);
    else
        manifest_mode(data + 1, size - 1);
    return 0;
}

/* ---- seeds ------------------------------------------------------------------ */

static const char *const manifest_seeds[] = {
    ("{\"name\":\"echo\",\"version\":\"1.0.0\",\"kind\":\"stateless\","
     "\"entrypoint\":[\"/usr/bin/python3\",\"agent.py\"]}"),
    ("{\"name\":\"counter-2\",\"version\":\"0.2\",\"kind\":\"stateful\",\"description\":\"counts\","
     "\"entrypoint\":[\"./run\",\"--fast\"],\"resources\":{\"cpu_millicores\":500,"
     "\"memory_mb\":128,\"gpus\":0},\"permissions\":{\"network\":false},\"timeout_ms\":5000}"),
    ("{\"name\":\"svc.x_y\",\"version\":\"3\",\"kind\":\"long-running\",\"entrypoint\":[\"/agent/"
     "svc\"],\"resources\":{\"memory_bytes\":8388608,\"gpus\":2},\"permissions\":{\"network\":true}"
     ","
     "\"capabilities\":[{\"name\":\"sum\",\"description\":\"adds numbers\",\"input_schema\":{"
     "\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"number\"}}},\"output_schema\":{"
     "\"type\":\"number\"}},{\"name\":\"ping\"}]}"),
    "{\"name\":\"bad\",\"version\":\"1\",\"kind\":\"stateless\",\"entrypoint\":[\"../x\"]}",
    ("{\"name\":\"big\",\"version\":\"1\",\"kind\":\"stateless\",\"entrypoint\":[\"a\"],"
     "\"resources\":{\"memory_bytes\":68719476736,\"cpu_millicores\":256000},"
     "\"timeout_ms\":86400000}"),
};

static const char *const reply_seeds[] = {
    "{\"id\":1,\"output\":{\"sum\":3}}\n",
    ("{\"log\":\"starting\"}\n{\"log\":{\"step\":1}}\n{\"id\":2,\"output\":[1,2],\"context\":{"
     "\"n\":1}}\n"),
    "{\"id\":9,\"output\":1}\n{\"id\":3,\"error\":\"bad input\"}\n",
    "{\"id\":4,\"error\":{\"code\":7},\"context\":null}\n",
    "{\"id\":1,\"output\":1,\"error\":\"x\"}\n",
    "{\"id\":1,\"output\":\"partial",
};

#define N_MANIFEST_SEEDS (sizeof manifest_seeds / sizeof manifest_seeds[0])
#define N_REPLY_SEEDS (sizeof reply_seeds / sizeof reply_seeds[0])

size_t fuzz_seed(size_t i, uint8_t *buf, size_t cap)
{
    const char *text;
    if (i < N_MANIFEST_SEEDS) {
        buf[0] = 0;
        text = manifest_seeds[i];
    } else if (i < N_MANIFEST_SEEDS + N_REPLY_SEEDS) {
        text = reply_seeds[i - N_MANIFEST_SEEDS];
        /* the id the seed's reply carries, as the request id */
        const char *id = strstr(text, "\"id\":");
        uint8_t want = id ? (uint8_t)(id[5] - '0') : 1;
        buf[0] = (uint8_t)(MODE_REPLY | ((want - 1) & 3) << 1);
    } else {
        return 0;
    }
    size_t n = strlen(text);
    NX_ASSERT(n + 1 <= cap);
    memcpy(buf + 1, text, n);
    return n + 1;
}

const struct fuzz_regression *fuzz_regressions(size_t *n)
{
    *n = 0;
    return NULL;
}
