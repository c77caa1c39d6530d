/*
 * test_agent_registry.c - the registry questions (node/agent_registry.h) over
 * a real ledger state machine on the in-memory store: version order, resolve
 * (latest that is not deprecated, or an exact version), list, show and search
 * by capability.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "node/agent_registry.h"
#include "tests/unit/ledger/fixture.h"

static void publish(struct fx *f, const char *name, const char *version, const char *cap,
                    const char *cap_description)
{
    char manifest[512];
    snprintf(manifest, sizeof manifest,
             "{\"name\":\"%s\",\"version\":\"%s\",\"kind\":\"stateless\","
             "\"entrypoint\":[\"/bin/true\"],\"capabilities\":[{\"name\":\"%s\","
             "\"description\":\"%s\"}]}",
             name, version, cap, cap_description);
    struct ledger_cmd c;
    fx_cmd(f, &c, LEDGER_CMD_AGENT_PUBLISH, &f->op);
    strcpy(c.u.publish.name, name);
    strcpy(c.u.publish.version, version);
    strcpy(c.u.publish.tenant, "acme");
    c.u.publish.manifest_len = (uint32_t)strlen(manifest);
    memcpy(c.u.publish.manifest, manifest, c.u.publish.manifest_len);
    crypto_generichash(c.u.publish.manifest_hash, LEDGER_HASH_BYTES, c.u.publish.manifest,
                       c.u.publish.manifest_len, NULL, 0);
    memset(c.u.publish.bundle_hash, version[0], LEDGER_HASH_BYTES);
    ledger_agent_sign(name, version, c.u.publish.manifest_hash, c.u.publish.bundle_hash, f->op.sk,
                      c.u.publish.publisher_sig);
    assert_int_equal(fx_submit(f, &c, f->op.sk, NULL), LEDGER_OK);
}

static void deprecate(struct fx *f, const char *name, const char *version)
{
    struct ledger_cmd c;
    fx_cmd(f, &c, LEDGER_CMD_AGENT_DEPRECATE, &f->op);
    strcpy(c.u.deprecate.name, name);
    strcpy(c.u.deprecate.version, version);
    assert_int_equal(fx_submit(f, &c, f->op.sk, NULL), LEDGER_OK);
}

static void versions_compare_numerically(void **state)
{
    (void)state;
    assert_true(agent_version_cmp("1.10.0", "1.9.2") > 0);
    assert_true(agent_version_cmp("1.2", "1.2.1") < 0);
    assert_true(agent_version_cmp("2.0", "10.0") < 0);
    assert_true(agent_version_cmp("1.01", "1.1") == 0);
    assert_true(agent_version_cmp("1.0-rc1", "1.0-rc2") < 0);
    assert_true(agent_version_cmp("1.0.0", "1.0.0") == 0);
}

static void resolve_picks_the_highest_version_not_deprecated(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    assert_int_equal(fx_tenant(&f, "acme", &f.op), LEDGER_OK);
    publish(&f, "echo", "1.9.2", "echo", "says it back");
    publish(&f, "echo", "1.10.0", "echo", "says it back");
    publish(&f, "echo", "1.2.0", "echo", "says it back");
    struct agent_registry *r;
    assert_int_equal(agent_registry_open(&r, &f.l), 0);
    struct agent_version v;
    assert_int_equal(agent_registry_resolve(r, "echo", &v), 0);
    assert_string_equal(v.rec.version, "1.10.0");
    assert_non_null(strstr((const char *)v.manifest, "\"1.10.0\""));
    agent_version_clear(&v);
    deprecate(&f, "echo", "1.10.0");
    assert_int_equal(agent_registry_resolve(r, "echo", &v), 0);
    assert_string_equal(v.rec.version, "1.9.2");
    agent_version_clear(&v);
    /* an exact version is found even when deprecated (the caller refuses it) */
    assert_int_equal(agent_registry_resolve(r, "echo@1.10.0", &v), 0);
    assert_true(v.rec.deprecated);
    agent_version_clear(&v);
    assert_int_equal(agent_registry_resolve(r, "echo@9.9", &v), NX_ERR_NOT_FOUND);
    assert_int_equal(agent_registry_resolve(r, "nope", &v), NX_ERR_NOT_FOUND);
    assert_int_equal(agent_registry_resolve(r, "@1.0", &v), NX_ERR_INVAL);
    deprecate(&f, "echo", "1.9.2");
    deprecate(&f, "echo", "1.2.0");
    assert_int_equal(agent_registry_resolve(r, "echo", &v), NX_ERR_NOT_FOUND);
    agent_registry_close(r);
    fx_free(&f);
}

static void list_show_and_search(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    assert_int_equal(fx_tenant(&f, "acme", &f.op), LEDGER_OK);
    publish(&f, "counter", "1.0", "count", "Counts WORDS");
    publish(&f, "greeter", "1.0", "greet", "says hello");
    publish(&f, "greeter", "2.0", "greet", "says hello");
    struct agent_registry *r;
    assert_int_equal(agent_registry_open(&r, &f.l), 0);
    unsigned status;
    json_t *all = agent_registry_json(r, NULL, NULL, &status);
    assert_int_equal(status, 200);
    json_t *agents = json_object_get(all, "agents");
    assert_int_equal(json_array_size(agents), 2);
    json_t *g = json_array_get(agents, 1);
    assert_string_equal(json_string_value(json_object_get(g, "name")), "greeter");
    assert_string_equal(json_string_value(json_object_get(g, "latest")), "2.0");
    assert_int_equal(json_array_size(json_object_get(g, "versions")), 2);
    assert_null(json_object_get(json_array_get(json_object_get(g, "versions"), 0), "manifest"));
    json_decref(all);

    json_t *found = agent_registry_json(r, NULL, "words", &status); /* description, any case */
    agents = json_object_get(found, "agents");
    assert_int_equal(json_array_size(agents), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(agents, 0), "name")),
                        "counter");
    json_decref(found);
    found = agent_registry_json(r, NULL, "GREET", &status); /* name */
    assert_int_equal(json_array_size(json_object_get(found, "agents")), 1);
    json_decref(found);
    found = agent_registry_json(r, NULL, "nothing-like-it", &status);
    assert_int_equal(json_array_size(json_object_get(found, "agents")), 0);
    json_decref(found);

    json_t *one = agent_registry_json(r, "greeter", NULL, &status);
    assert_int_equal(status, 200);
    json_t *v0 = json_array_get(json_object_get(one, "versions"), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(v0, "manifest"), "name")),
                        "greeter");
    assert_int_equal(strlen(json_string_value(json_object_get(v0, "bundle_hash"))), 64);
    json_decref(one);
    one = agent_registry_json(r, "missing", NULL, &status);
    assert_int_equal(status, 404);
    json_decref(one);
    agent_registry_close(r);
    fx_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(versions_compare_numerically),
        cmocka_unit_test(resolve_picks_the_highest_version_not_deprecated),
        cmocka_unit_test(list_show_and_search),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
