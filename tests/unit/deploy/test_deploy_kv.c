/*
 * Unit tests of node/deploy_kv.c: replica keys (round trip, every malformed
 * shape refused), entry values (round trip assigned and pending, malformed
 * values refused), the log ring (order, wrap-around, cut lines), log text of
 * agent lines and line splitting across reads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/deploy_kv.h"

static bool parse_key(const char *key, char *name, uint32_t *r)
{
    return deploy_key_parse(key, strlen(key), name, r);
}

static void keys_round_trip(void **state)
{
    (void)state;
    char key[DEPLOY_KEY_MAX], name[DEPLOY_NAME_MAX + 1];
    uint32_t r = 99;
    assert_int_equal(deploy_key_format(key, "tick", 7), NX_OK);
    assert_string_equal(key, "_deploy/tick/7");
    assert_true(parse_key(key, name, &r));
    assert_string_equal(name, "tick");
    assert_int_equal(r, 7);
    char longest[DEPLOY_NAME_MAX + 1];
    memset(longest, 'a', DEPLOY_NAME_MAX);
    longest[DEPLOY_NAME_MAX] = '\0';
    assert_int_equal(deploy_key_format(key, longest, DEPLOY_REPLICAS_MAX - 1), NX_OK);
    assert_true(parse_key(key, name, &r));
    assert_string_equal(name, longest);
    assert_int_equal(r, DEPLOY_REPLICAS_MAX - 1);
}

static void bad_keys_are_refused(void **state)
{
    (void)state;
    char key[DEPLOY_KEY_MAX], name[DEPLOY_NAME_MAX + 1], too_long[DEPLOY_NAME_MAX + 2];
    uint32_t r;
    const char *bad[] = {"",
                         "_deploy/",
                         "_deploy/tick",
                         "_deploy/tick/",
                         "_deploy//1",
                         "_deploy/tick/x",
                         "_deploy/tick/-1",
                         "_deploy/tick/01",
                         "_deploy/tick/64",
                         "_deploy/tick/123456",
                         "_deploy/a/b/1",
                         "deploy/tick/1",
                         "_deplox/tick/1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(parse_key(bad[i], name, &r));
    memset(too_long, 'a', sizeof too_long - 1);
    too_long[sizeof too_long - 1] = '\0';
    assert_int_equal(deploy_key_format(key, too_long, 0), NX_ERR_INVAL);
    assert_int_equal(deploy_key_format(key, "", 0), NX_ERR_INVAL);
    assert_int_equal(deploy_key_format(key, "a/b", 0), NX_ERR_INVAL);
    assert_int_equal(deploy_key_format(key, "tick", DEPLOY_REPLICAS_MAX), NX_ERR_INVAL);
}

static void fill(struct deploy_entry *e, bool assigned)
{
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "tick");
    e->replica = 3;
    e->assigned = assigned;
    memset(e->node, 0xab, sizeof e->node);
    snprintf(e->agent, sizeof e->agent, "ticker-sh");
    snprintf(e->version, sizeof e->version, "1.0.0");
    memset(e->bundle_hash, 'c', BUNDLE_HASH_HEX_LEN);
    if (!assigned)
        snprintf(e->why, sizeof e->why, "no member has 2 GPUs free");
    e->since_ms = 1234567890123ull;
}

static void entries_round_trip(void **state)
{
    (void)state;
    for (int assigned = 0; assigned < 2; assigned++) {
        struct deploy_entry e, back;
        fill(&e, assigned);
        if (!assigned)
            memset(e.node, 0, sizeof e.node); /* a pending entry has no home */
        char *txt = deploy_entry_encode(&e);
        assert_non_null(txt);
        const char *key = "_deploy/tick/3";
        assert_true(deploy_entry_parse(key, strlen(key), txt, strlen(txt), &back));
        assert_memory_equal(&e, &back, sizeof e);
        free(txt);
    }
}

static void bad_entries_are_refused(void **state)
{
    (void)state;
    const char *key = "_deploy/tick/0";
    char hex64[BUNDLE_HASH_HEX_LEN + 1], node[NODE_ID_HEX_LEN + 1];
    memset(hex64, 'c', BUNDLE_HASH_HEX_LEN);
    hex64[BUNDLE_HASH_HEX_LEN] = '\0';
    memset(node, 'a', NODE_ID_HEX_LEN);
    node[NODE_ID_HEX_LEN] = '\0';
    char vals[8][512];
    snprintf(vals[0], sizeof vals[0], "not json");
    snprintf(vals[1], sizeof vals[1], "[]");
    snprintf(vals[2], sizeof vals[2], "{\"agent\":\"a\",\"version\":\"1\",\"bundle_hash\":\"%s\"}",
             hex64); /* no node */
    snprintf(vals[3], sizeof vals[3],
             "{\"node\":\"abc\",\"agent\":\"a\",\"version\":\"1\",\"bundle_hash\":\"%s\"}", hex64);
    snprintf(vals[4], sizeof vals[4],
             "{\"node\":\"%s\",\"agent\":\"a\",\"version\":\"1\",\"bundle_hash\":\"short\"}", node);
    snprintf(vals[5], sizeof vals[5],
             "{\"node\":\"%s\",\"agent\":\"a\",\"version\":\"1\",\"bundle_hash\":\"%s\","
             "\"since_ms\":-1}",
             node, hex64);
    snprintf(vals[6], sizeof vals[6],
             "{\"node\":\"\",\"agent\":7,\"version\":\"1\",\"bundle_hash\":\"\"}");
    snprintf(vals[7], sizeof vals[7],
             "{\"node\":\"%s\",\"agent\":\"a\",\"version\":\"1\",\"bundle_hash\":\"%s\","
             "\"why\":5}",
             node, hex64);
    struct deploy_entry e;
    for (size_t i = 0; i < 8; i++) {
        assert_false(deploy_entry_parse(key, strlen(key), vals[i], strlen(vals[i]), &e));
        assert_int_equal(e.replica, 0);
        assert_false(e.assigned);
    }
    /* the good shape of the same, as a control: pending, no hash yet */
    const char *ok = "{\"node\":\"\",\"agent\":\"a\",\"version\":\"1\",\"bundle_hash\":\"\","
                     "\"why\":\"not in the registry\"}";
    assert_true(deploy_entry_parse(key, strlen(key), ok, strlen(ok), &e));
    assert_false(e.assigned);
    assert_string_equal(e.why, "not in the registry");
}

static void log_ring_keeps_the_last_lines(void **state)
{
    (void)state;
    struct deploy_log *l = calloc(1, sizeof *l);
    assert_non_null(l);
    assert_null(deploy_log_get(l, 0));
    char buf[32];
    for (int i = 0; i < DEPLOY_LOG_LINES + 10; i++) {
        int n = snprintf(buf, sizeof buf, "line %d", i);
        deploy_log_push(l, (uint64_t)i, buf, (size_t)n);
    }
    assert_int_equal(l->count, DEPLOY_LOG_LINES);
    assert_int_equal(l->total, DEPLOY_LOG_LINES + 10);
    assert_string_equal(deploy_log_get(l, 0)->text, "line 10");
    assert_int_equal(deploy_log_get(l, 0)->ts_ms, 10);
    snprintf(buf, sizeof buf, "line %d", DEPLOY_LOG_LINES + 9);
    assert_string_equal(deploy_log_get(l, DEPLOY_LOG_LINES - 1)->text, buf);
    assert_null(deploy_log_get(l, DEPLOY_LOG_LINES));
    char *big = malloc(3 * DEPLOY_LOG_LINE_MAX);
    assert_non_null(big);
    memset(big, 'x', 3 * DEPLOY_LOG_LINE_MAX);
    deploy_log_push(l, 1, big, 3 * DEPLOY_LOG_LINE_MAX);
    assert_int_equal(strlen(deploy_log_get(l, DEPLOY_LOG_LINES - 1)->text),
                     DEPLOY_LOG_LINE_MAX - 1);
    free(big);
    free(l);
}

static void log_text_of_agent_lines(void **state)
{
    (void)state;
    char out[64];
    const char *s = "{\"log\":\"tick 3\"}";
    assert_int_equal(deploy_log_text(s, strlen(s), out, sizeof out), 6);
    assert_string_equal(out, "tick 3");
    s = "{\"log\":{\"n\":3}}";
    deploy_log_text(s, strlen(s), out, sizeof out);
    assert_string_equal(out, "{\"n\":3}");
    s = "plain text, not JSON";
    deploy_log_text(s, strlen(s), out, sizeof out);
    assert_string_equal(out, s);
    s = "{\"id\":1,\"output\":2}";
    deploy_log_text(s, strlen(s), out, sizeof out);
    assert_string_equal(out, s); /* not a log line: kept as it is */
    assert_int_equal(deploy_log_text(s, strlen(s), out, 5), 4);
    assert_string_equal(out, "{\"id");
}

struct collected {
    char lines[8][64];
    size_t n;
};

static void collect(void *arg, const char *line, size_t len)
{
    struct collected *c = arg;
    assert_true(c->n < 8);
    snprintf(c->lines[c->n++], sizeof c->lines[0], "%.*s", (int)len, line);
}

static void lines_split_across_reads(void **state)
{
    (void)state;
    char buf[16];
    size_t len = 0;
    struct collected c = {.n = 0};
    const char *reads[] = {"ab", "c\nde", "f\n\ngh"};
    for (size_t i = 0; i < 3; i++) {
        memcpy(buf + len, reads[i], strlen(reads[i]));
        len += strlen(reads[i]);
        deploy_lines_split(buf, &len, sizeof buf, collect, &c);
    }
    assert_int_equal(c.n, 3);
    assert_string_equal(c.lines[0], "abc");
    assert_string_equal(c.lines[1], "def");
    assert_string_equal(c.lines[2], "");
    assert_int_equal(len, 2);
    assert_memory_equal(buf, "gh", 2);
    /* a line that fills the buffer is handed over cut, so reading goes on */
    memset(buf + len, 'z', sizeof buf - 1 - len);
    len = sizeof buf - 1;
    deploy_lines_split(buf, &len, sizeof buf, collect, &c);
    assert_int_equal(c.n, 4);
    assert_int_equal(strlen(c.lines[3]), sizeof buf - 1);
    assert_int_equal(len, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(keys_round_trip),
        cmocka_unit_test(bad_keys_are_refused),
        cmocka_unit_test(entries_round_trip),
        cmocka_unit_test(bad_entries_are_refused),
        cmocka_unit_test(log_ring_keeps_the_last_lines),
        cmocka_unit_test(log_text_of_agent_lines),
        cmocka_unit_test(lines_split_across_reads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
