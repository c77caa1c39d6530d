/*
 * Unit tests of sandbox/manifest.c: a good manifest parses with its
 * defaults, and every field refuses bad values with a message that names it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "sandbox/sandbox.h"

#define GOOD_EP "\"entrypoint\":[\"/usr/bin/python3\",\"main.py\"]"
#define HEAD "{\"name\":\"wc\",\"version\":\"1.0\",\"kind\":\"stateless\"," GOOD_EP

static void full_manifest_parses_every_field(void **state)
{
    (void)state;
    const char *j =
        "{\"name\":\"word-count\",\"version\":\"1.2.3\",\"kind\":\"stateful\","
        "\"entrypoint\":[\"/usr/bin/python3\",\"main.py\",\"--x\"],"
        "\"resources\":{\"cpu_millicores\":500,\"memory_mb\":128,\"gpus\":1},"
        "\"permissions\":{\"network\":true},\"timeout_ms\":5000,"
        "\"capabilities\":[{\"name\":\"count\",\"description\":\"counts words\","
        "\"input_schema\":{\"type\":\"string\"},\"output_schema\":{\"type\":\"object\"}}]}";
    struct sbx_manifest m;
    char err[SBX_ERR_MAX] = "";
    assert_int_equal(sbx_manifest_parse(j, strlen(j), &m, err, sizeof err), NX_OK);
    assert_string_equal(m.name, "word-count");
    assert_string_equal(m.version, "1.2.3");
    assert_int_equal(m.kind, SBX_KIND_STATEFUL);
    assert_int_equal(m.entrypoint_len, 3);
    assert_string_equal(m.entrypoint[1], "main.py");
    assert_null(m.entrypoint[3]);
    assert_int_equal(m.cpu_millicores, 500);
    assert_int_equal(m.memory_bytes, 128u << 20);
    assert_int_equal(m.gpus, 1);
    assert_true(m.network);
    assert_int_equal(m.timeout_ms, 5000);
    assert_int_equal(m.caps_len, 1);
    assert_string_equal(m.caps[0].name, "count");
    assert_string_equal(m.caps[0].description, "counts words");
    assert_non_null(m.caps[0].input_schema);
    sbx_manifest_free(&m);
}

static void minimal_manifest_gets_defaults(void **state)
{
    (void)state;
    const char *j = HEAD "}";
    struct sbx_manifest m;
    char err[SBX_ERR_MAX] = "";
    assert_int_equal(sbx_manifest_parse(j, strlen(j), &m, err, sizeof err), NX_OK);
    assert_int_equal(m.kind, SBX_KIND_STATELESS);
    assert_int_equal(m.cpu_millicores, SBX_DEFAULT_CPU_MILLICORES);
    assert_int_equal(m.memory_bytes, SBX_DEFAULT_MEMORY_BYTES);
    assert_int_equal(m.timeout_ms, SBX_DEFAULT_TIMEOUT_MS);
    assert_false(m.network);
    assert_int_equal(m.caps_len, 0);
    sbx_manifest_free(&m);
}

struct bad_case {
    const char *json;
    const char *message; /* expected exact error text */
};

static const struct bad_case bad_cases[] = {
    {"not json", NULL},
    {"[1]", "manifest: (top level): must be a JSON object"},
    {"{\"version\":\"1\",\"kind\":\"stateless\"," GOOD_EP "}", "manifest: name: is required"},
    {"{\"name\":7,\"version\":\"1\",\"kind\":\"stateless\"," GOOD_EP "}",
     "manifest: name: must be a string"},
    {"{\"name\":\"\",\"version\":\"1\",\"kind\":\"stateless\"," GOOD_EP "}",
     "manifest: name: must be 1 to 64 bytes"},
    {"{\"name\":\"Bad Name\",\"version\":\"1\",\"kind\":\"stateless\"," GOOD_EP "}",
     "manifest: name: must use only a-z, 0-9, '-', '_' and '.'"},
    {"{\"name\":\"a\",\"kind\":\"stateless\"," GOOD_EP "}", "manifest: version: is required"},
    {"{\"name\":\"a\",\"version\":[],\"kind\":\"stateless\"," GOOD_EP "}",
     "manifest: version: must be a string"},
    {"{\"name\":\"a\",\"version\":\"1\"," GOOD_EP "}", "manifest: kind: is required"},
    {"{\"name\":\"a\",\"version\":\"1\",\"kind\":\"batch\"," GOOD_EP "}",
     "manifest: kind: must be \"stateless\", \"stateful\" or \"long-running\""},
    {"{\"name\":\"a\",\"version\":\"1\",\"kind\":\"stateless\"}",
     "manifest: entrypoint: is required"},
    {"{\"name\":\"a\",\"version\":\"1\",\"kind\":\"stateless\",\"entrypoint\":[]}",
     "manifest: entrypoint: must be a non-empty array of strings"},
    {"{\"name\":\"a\",\"version\":\"1\",\"kind\":\"stateless\",\"entrypoint\":\"x\"}",
     "manifest: entrypoint: must be a non-empty array of strings"},
    {"{\"name\":\"a\",\"version\":\"1\",\"kind\":\"stateless\",\"entrypoint\":[\"x\",3]}",
     "manifest: entrypoint[1]: must be a non-empty string shorter than 512 bytes"},
    {"{\"name\":\"a\",\"version\":\"1\",\"kind\":\"stateless\",\"entrypoint\":[\"../x\"]}",
     "manifest: entrypoint[0]: must not contain .."},
    {"{\"name\":\"a\",\"version\":\"1\",\"kind\":\"stateless\",\"entrypoint\":[\"/etc/x\"]}",
     "manifest: entrypoint[0]: absolute paths must be under /usr/, /bin/ or /agent/"},
    {HEAD ",\"resources\":[]}", "manifest: resources: must be an object"},
    {HEAD ",\"resources\":{\"cpu_millicores\":0}}",
     "manifest: resources.cpu_millicores: must be a positive integer"},
    {HEAD ",\"resources\":{\"cpu_millicores\":\"1\"}}",
     "manifest: resources.cpu_millicores: must be a positive integer"},
    {HEAD ",\"resources\":{\"cpu_millicores\":999999}}",
     "manifest: resources.cpu_millicores: must be at most 256000"},
    {HEAD ",\"resources\":{\"memory_mb\":-5}}",
     "manifest: resources.memory_mb: must be a positive integer"},
    {HEAD ",\"resources\":{\"memory_mb\":1.5}}",
     "manifest: resources.memory_mb: must be a positive integer"},
    {HEAD ",\"resources\":{\"memory_mb\":1}}",
     "manifest: resources.memory_mb: must be at least 4 MiB"},
    {HEAD ",\"resources\":{\"memory_bytes\":0}}",
     "manifest: resources.memory_bytes: must be a positive integer"},
    {HEAD ",\"resources\":{\"memory_bytes\":8388608,\"memory_mb\":8}}",
     "manifest: resources.memory_mb: give memory_bytes or memory_mb, not both"},
    {HEAD ",\"resources\":{\"gpus\":-1}}",
     "manifest: resources.gpus: must be an integer from 0 to 64"},
    {HEAD ",\"resources\":{\"disk\":1}}", "manifest: resources.disk: unknown field"},
    {HEAD ",\"permissions\":true}", "manifest: permissions: must be an object"},
    {HEAD ",\"permissions\":{\"network\":1}}",
     "manifest: permissions.network: must be true or false"},
    {HEAD ",\"permissions\":{\"root\":true}}", "manifest: permissions.root: unknown field"},
    {HEAD ",\"capabilities\":{}}", "manifest: capabilities: must be an array"},
    {HEAD ",\"capabilities\":[3]}", "manifest: capabilities[0]: must be an object"},
    {HEAD ",\"capabilities\":[{}]}", "manifest: capabilities[0].name: is required"},
    {HEAD ",\"capabilities\":[{\"name\":\"a\",\"description\":5}]}",
     "manifest: capabilities[0].description: must be a string"},
    {HEAD ",\"capabilities\":[{\"name\":\"a\",\"input_schema\":\"x\"}]}",
     "manifest: capabilities[0].input_schema: must be an object (a JSON schema)"},
    {HEAD ",\"capabilities\":[{\"name\":\"a\",\"output_schema\":1}]}",
     "manifest: capabilities[0].output_schema: must be an object (a JSON schema)"},
    {HEAD ",\"capabilities\":[{\"name\":\"a\",\"extra\":1}]}",
     "manifest: capabilities[0].extra: unknown field"},
    {HEAD ",\"capabilities\":[{\"name\":\"a\"},{\"name\":\"a\"}]}",
     "manifest: capabilities[1].name: duplicate name a"},
    {HEAD ",\"timeout_ms\":0}", "manifest: timeout_ms: must be a positive integer"},
    {HEAD ",\"timeout_ms\":999999999999}", "manifest: timeout_ms: must be at most 86400000"},
    {HEAD ",\"surprise\":1}", "manifest: surprise: unknown field"},
    {HEAD ",\"name\":\"again\"}", NULL},
};

static void every_bad_field_is_refused_by_name(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        struct sbx_manifest m;
        char err[SBX_ERR_MAX] = "";
        int rc =
            sbx_manifest_parse(bad_cases[i].json, strlen(bad_cases[i].json), &m, err, sizeof err);
        if (rc == 0)
            fail_msg("case %zu accepted: %s", i, bad_cases[i].json);
        if (bad_cases[i].message && strcmp(err, bad_cases[i].message) != 0)
            fail_msg("case %zu: got \"%s\", want \"%s\"", i, err, bad_cases[i].message);
        if (!bad_cases[i].message)
            assert_int_equal(strncmp(err, "manifest: not valid JSON", 24), 0);
    }
}

static void oversized_manifest_is_refused(void **state)
{
    (void)state;
    static char big[SBX_MANIFEST_MAX_BYTES + 2];
    memset(big, ' ', sizeof big - 1);
    struct sbx_manifest m;
    char err[SBX_ERR_MAX];
    assert_int_equal(sbx_manifest_parse(big, sizeof big - 1, &m, err, sizeof err), NX_ERR_TOO_BIG);
}

static void missing_manifest_file_is_not_found(void **state)
{
    (void)state;
    struct sbx_manifest m;
    char err[SBX_ERR_MAX];
    assert_int_equal(sbx_manifest_load("/nonexistent-bundle", &m, err, sizeof err),
                     NX_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "manifest.json"));
}

static void config_takes_manifest_resources_and_network_only_when_granted(void **state)
{
    (void)state;
    const char *j = HEAD ",\"resources\":{\"cpu_millicores\":250,\"memory_bytes\":16777216},"
                         "\"permissions\":{\"network\":true},\"timeout_ms\":1234}";
    struct sbx_manifest m;
    char err[SBX_ERR_MAX];
    assert_int_equal(sbx_manifest_parse(j, strlen(j), &m, err, sizeof err), NX_OK);
    struct sbx_config cfg;
    sbx_config_init(&cfg);
    sbx_config_from_manifest(&cfg, &m, false);
    assert_int_equal(cfg.limits.cpu_millicores, 250);
    assert_int_equal(cfg.limits.memory_bytes, 16777216);
    assert_int_equal(cfg.limits.timeout_ms, 1234);
    assert_false(cfg.allow_network);
    sbx_config_from_manifest(&cfg, &m, true);
    assert_true(cfg.allow_network);
    assert_string_equal(cfg.argv[0], "/usr/bin/python3");
    sbx_manifest_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(full_manifest_parses_every_field),
        cmocka_unit_test(minimal_manifest_gets_defaults),
        cmocka_unit_test(every_bad_field_is_refused_by_name),
        cmocka_unit_test(oversized_manifest_is_refused),
        cmocka_unit_test(missing_manifest_file_is_not_found),
        cmocka_unit_test(config_takes_manifest_resources_and_network_only_when_granted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
