/*
 * The agent protocol and the three agent kinds with real sandboxes: the
 * example agents (C with the SDK, Python, sh) answer through the protocol;
 * protocol abuse (garbage, oversized lines, silence, floods) is refused; a
 * stateful session keeps its context, also across processes (RocksDB); the
 * warm pool serves requests; the supervisor restarts with backoff and
 * stops. Root only (skipped otherwise).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/sandbox/common.h"

#define NEED_ROOT()                                                                                \
    do {                                                                                           \
        if (!ts_can_sandbox())                                                                     \
            skip();                                                                                \
    } while (0)

/* Loads an example bundle's manifest into cfg (m must outlive cfg's use). */
static void example(struct sbx_config *cfg, struct sbx_manifest *m, const char *dir)
{
    char err[SBX_ERR_MAX];
    if (sbx_manifest_load(dir, m, err, sizeof err) != 0)
        fail_msg("%s", err);
    ts_config(cfg, dir);
    sbx_config_from_manifest(cfg, m, false);
}

static void echo_c_agent_answers_through_the_sdk(void **state)
{
    (void)state;
    NEED_ROOT();
    struct sbx_manifest m;
    struct sbx_config cfg;
    example(&cfg, &m, NX_BUILT_AGENTS "/echo-c");
    json_t *input = json_pack("{s:s}", "hello", "world");
    struct sbx_reply reply;
    struct sbx_usage u;
    char err[SBX_ERR_MAX] = "";
    int rc = sbx_run_once(&cfg, input, NULL, &reply, &u, err, sizeof err);
    if (rc != 0)
        fail_msg("%s", err);
    assert_null(reply.error);
    assert_true(json_equal(json_object_get(reply.output, "echo"), input));
    assert_int_equal(json_integer_value(json_object_get(reply.output, "calls")), 1);
    assert_int_equal(u.exit_code, 0);
    assert_false(u.timed_out);
    sbx_reply_clear(&reply);
    json_decref(input);
    sbx_manifest_free(&m);
}

static void hello_sh_agent_answers_one_request(void **state)
{
    (void)state;
    NEED_ROOT();
    struct sbx_manifest m;
    struct sbx_config cfg;
    example(&cfg, &m, NX_SOURCE_AGENTS "/hello-sh");
    json_t *input = json_string("hi");
    struct sbx_reply reply;
    struct sbx_usage u;
    char err[SBX_ERR_MAX] = "";
    if (sbx_run_once(&cfg, input, NULL, &reply, &u, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_string_equal(json_string_value(json_object_get(reply.output, "greeting")),
                        "hello from sh");
    sbx_reply_clear(&reply);
    json_decref(input);
    sbx_manifest_free(&m);
}

static void python_session_keeps_a_running_total(void **state)
{
    (void)state;
    NEED_ROOT();
    struct sbx_manifest m;
    struct sbx_config cfg;
    example(&cfg, &m, NX_SOURCE_AGENTS "/wordcount-py");
    struct sbx_session_store store;
    assert_int_equal(sbx_session_store_mem_open(&store), 0);
    static const char *const texts[] = {"one two three", "four five"};
    for (int i = 0; i < 2; i++) {
        json_t *input = json_string(texts[i]);
        struct sbx_reply reply;
        struct sbx_usage u;
        char err[SBX_ERR_MAX] = "";
        if (sbx_session_call(&store, "s-1", &cfg, input, &reply, &u, err, sizeof err) != 0)
            fail_msg("%s", err);
        assert_int_equal(json_integer_value(json_object_get(reply.output, "total")),
                         i == 0 ? 3 : 5);
        sbx_reply_clear(&reply);
        json_decref(input);
    }
    /* An error reply keeps the old context. */
    json_t *bad = json_integer(5);
    struct sbx_reply reply;
    struct sbx_usage u;
    char err[SBX_ERR_MAX] = "";
    assert_int_equal(sbx_session_call(&store, "s-1", &cfg, bad, &reply, &u, err, sizeof err), 0);
    assert_string_equal(reply.error, "input must be a string");
    sbx_reply_clear(&reply);
    json_decref(bad);
    char *saved = NULL;
    assert_int_equal(store.ops->load(store.impl, "s-1", &saved), 0);
    assert_string_equal(saved, "{\"total\":5,\"calls\":2}");
    free(saved);
    sbx_session_store_close(&store);
    sbx_manifest_free(&m);
}

static int echo_session_call(const char *db, int *calls)
{
    struct sbx_manifest m;
    struct sbx_config cfg;
    example(&cfg, &m, NX_BUILT_AGENTS "/echo-c");
    struct sbx_session_store store;
    char err[SBX_ERR_MAX] = "";
    int rc = sbx_session_store_rocksdb_open(db, &store, err, sizeof err);
    if (rc == 0) {
        json_t *input = json_string("x");
        struct sbx_reply reply;
        struct sbx_usage u;
        rc = sbx_session_call(&store, "sess-42", &cfg, input, &reply, &u, err, sizeof err);
        if (rc == 0)
            *calls = (int)json_integer_value(json_object_get(reply.output, "calls"));
        sbx_reply_clear(&reply);
        json_decref(input);
        sbx_session_store_close(&store);
    }
    if (rc != 0)
        fprintf(stderr, "session call: %s\n", err);
    sbx_manifest_free(&m);
    return rc;
}

static void session_resumes_in_a_new_process_from_rocksdb(void **state)
{
    (void)state;
    NEED_ROOT();
    char db[] = "/tmp/nx-sbx-sessions-XXXXXX";
    assert_non_null(mkdtemp(db));
    pid_t pid = fork();
    if (pid == 0) {
        int calls = 0;
        _exit(echo_session_call(db, &calls) == 0 && calls == 1 ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    int calls = 0;
    assert_int_equal(echo_session_call(db, &calls), 0);
    assert_int_equal(calls, 2);
    ts_rmrf(db);
}

static void warm_pool_serves_requests(void **state)
{
    (void)state;
    NEED_ROOT();
    struct sbx_manifest m;
    struct sbx_config cfg;
    example(&cfg, &m, NX_BUILT_AGENTS "/echo-c");
    struct sbx_pool *pool;
    char err[SBX_ERR_MAX] = "";
    if (sbx_pool_create(&cfg, 2, &pool, err, sizeof err) != 0)
        fail_msg("%s", err);
    for (int i = 0; i < 3; i++) {
        struct sbx_run *run;
        assert_int_equal(sbx_pool_take(pool, &run, err, sizeof err), 0);
        json_t *input = json_integer(i);
        struct sbx_reply reply;
        assert_int_equal(sbx_call(run, 9, input, NULL, 2000, &reply, err, sizeof err), 0);
        assert_int_equal(json_integer_value(json_object_get(reply.output, "echo")), i);
        sbx_reply_clear(&reply);
        json_decref(input);
        sbx_run_close_stdin(run);
        struct sbx_usage u;
        assert_int_equal(sbx_run_wait(run, &u), 0);
        assert_int_equal(u.exit_code, 0);
        sbx_run_free(run);
        assert_int_equal(sbx_pool_refill(pool, err, sizeof err), 0);
    }
    sbx_pool_free(pool);
    sbx_manifest_free(&m);
}

/* Runs a sh agent speaking (or abusing) the protocol for one sbx_call. */
static int call_sh(const char *script, struct sbx_reply *reply, struct sbx_usage *u, char *err)
{
    char bundle[128];
    ts_bundle_new(bundle, sizeof bundle);
    struct sbx_config cfg;
    ts_config(&cfg, bundle);
    cfg.limits.timeout_ms = 2000;
    const char *argv[] = {"/usr/bin/sh", "-c", script, NULL};
    cfg.argv = argv;
    int rc = sbx_run_once(&cfg, json_null(), NULL, reply, u, err, SBX_ERR_MAX);
    ts_rmrf(bundle);
    return rc;
}

static void log_lines_and_other_ids_are_skipped(void **state)
{
    (void)state;
    NEED_ROOT();
    struct sbx_reply reply;
    struct sbx_usage u;
    char err[SBX_ERR_MAX] = "";
    int rc = call_sh("read l; echo '{\"log\":\"working\"}'; echo '{\"id\":7,\"output\":0}'; "
                     "echo '{\"id\":1,\"output\":42,\"context\":{\"n\":1}}'",
                     &reply, &u, err);
    if (rc != 0)
        fail_msg("%s", err);
    assert_int_equal(json_integer_value(reply.output), 42);
    assert_int_equal(json_integer_value(json_object_get(reply.context, "n")), 1);
    sbx_reply_clear(&reply);
}

static void garbage_line_is_a_protocol_error(void **state)
{
    (void)state;
    NEED_ROOT();
    struct sbx_reply reply;
    struct sbx_usage u;
    char err[SBX_ERR_MAX] = "";
    assert_int_equal(call_sh("read l; echo 'not json'; sleep 5", &reply, &u, err), NX_ERR_DECODE);
    assert_non_null(strstr(err, "not a JSON object"));
    assert_false(u.timed_out); /* killed at once, not at the deadline */
    assert_int_equal(
        call_sh("read l; echo '{\"id\":1,\"output\":1,\"error\":\"x\"}'", &reply, &u, err),
        NX_ERR_DECODE);
    assert_non_null(strstr(err, "exactly one of output and error"));
}

static void oversized_line_is_refused(void **state)
{
    (void)state;
    NEED_ROOT();
    struct sbx_reply reply;
    struct sbx_usage u;
    char err[SBX_ERR_MAX] = "";
    assert_int_equal(call_sh("read l; head -c 2000000 /dev/zero | tr '\\0' a", &reply, &u, err),
                     NX_ERR_TOO_BIG);
    assert_non_null(strstr(err, "exceeds"));
}

static void silence_and_early_exit_are_reported(void **state)
{
    (void)state;
    NEED_ROOT();
    struct sbx_reply reply;
    struct sbx_usage u;
    char err[SBX_ERR_MAX] = "";
    assert_int_equal(call_sh("read l; echo oops >&2; exit 3", &reply, &u, err), NX_ERR_UNAVAILABLE);
    assert_non_null(strstr(err, "oops"));
    assert_int_equal(u.exit_code, 3);
    assert_int_equal(call_sh("read l; sleep 10", &reply, &u, err), NX_ERR_TIMEOUT);
    assert_true(u.timed_out);
}

static void output_flood_is_cut_at_the_total_limit(void **state)
{
    (void)state;
    NEED_ROOT();
    char bundle[128];
    ts_bundle_new(bundle, sizeof bundle);
    struct sbx_config cfg;
    ts_config(&cfg, bundle);
    struct ts_result *r = calloc(1, sizeof *r);
    ts_run_sh(&cfg, "yes '{\"log\":\"flood\"}'", r);
    assert_int_equal(r->rc, 0);
    assert_true(r->usage.output_truncated);
    assert_int_equal(r->usage.term_signal, 9);
    assert_false(r->usage.timed_out);
    free(r);
    ts_rmrf(bundle);
}

static void request_to_a_dead_agent_fails_without_sigpipe(void **state)
{
    (void)state;
    NEED_ROOT();
    char bundle[128];
    ts_bundle_new(bundle, sizeof bundle);
    struct sbx_config cfg;
    ts_config(&cfg, bundle);
    const char *argv[] = {"/usr/bin/true", NULL};
    cfg.argv = argv;
    struct sbx_run *run;
    char err[SBX_ERR_MAX] = "";
    assert_int_equal(sbx_run_start(&cfg, &run, err, sizeof err), 0);
    /* Loop style: wait on the pidfd, then step. */
    struct pollfd pf = {.fd = sbx_run_pidfd(run), .events = POLLIN};
    assert_int_equal(poll(&pf, 1, 2000), 1);
    assert_int_equal(sbx_run_poll(run), 0);
    assert_true(sbx_run_exited(run)); /* the agent has exited; its stdin has no reader */
    struct sbx_reply reply;
    json_t *input = json_string("anyone?");
    int rc = sbx_call(run, 1, input, NULL, 1000, &reply, err, sizeof err);
    assert_true(rc == NX_ERR_UNAVAILABLE);
    json_decref(input);
    struct sbx_usage u;
    assert_int_equal(sbx_run_wait(run, &u), 0);
    sbx_run_free(run);
    ts_rmrf(bundle);
}

static void sdk_answers_malformed_requests_with_errors(void **state)
{
    (void)state;
    /* The SDK outside any sandbox: echo-c fed a file of requests. */
    char in[] = "/tmp/nx-sbx-sdkin-XXXXXX";
    int fd = mkstemp(in);
    assert_true(fd >= 0);
    const char *reqs = "garbage\n\n[1]\n{\"id\":3,\"input\":\"x\",\"context\":{\"calls\":4}}\n";
    assert_int_equal(write(fd, reqs, strlen(reqs)), (ssize_t)strlen(reqs));
    close(fd);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s/echo-c/echo-c < %s", NX_BUILT_AGENTS, in);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char out[1024] = "";
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    assert_int_equal(pclose(p), 0);
    unlink(in);
    assert_string_equal(out,
                        "{\"id\":0,\"error\":\"request is not a JSON object with an integer id\"}\n"
                        "{\"id\":0,\"error\":\"request is not a JSON object with an integer id\"}\n"
                        "{\"id\":3,\"output\":{\"echo\":\"x\",\"calls\":5},"
                        "\"context\":{\"calls\":5}}\n");
}

static void setup_failure_is_reported_with_step_and_errno(void **state)
{
    (void)state;
    NEED_ROOT();
    char bundle[128];
    ts_bundle_new(bundle, sizeof bundle);
    struct sbx_config cfg;
    ts_config(&cfg, bundle);
    const char *argv[] = {"no-such-agent", NULL};
    cfg.argv = argv;
    struct sbx_run *run;
    char err[SBX_ERR_MAX] = "";
    assert_int_equal(sbx_run_start(&cfg, &run, err, sizeof err), NX_ERR_IO);
    assert_string_equal(err,
                        "sandbox setup: execve /agent/no-such-agent: No such file or directory");
    const char *sh[] = {"/usr/bin/true", NULL};
    cfg.argv = sh;
    struct sbx_bind bind = {.host_path = "/nonexistent-runtime", .sandbox_path = "/opt/x"};
    cfg.extra_binds = &bind;
    cfg.extra_binds_len = 1;
    assert_int_equal(sbx_run_start(&cfg, &run, err, sizeof err), NX_ERR_IO);
    assert_string_equal(
        err, "sandbox setup: bind: stat /nonexistent-runtime: No such file or directory");
    ts_rmrf(bundle);
}

struct sup_log {
    uint64_t delays[8];
    int n;
    volatile int stop;
};

static void on_exit_cb(void *arg, const struct sbx_usage *u, uint64_t next_delay_ms)
{
    struct sup_log *l = arg;
    assert_non_null(u);
    assert_int_equal(u->exit_code, 1);
    if (l->n < 8)
        l->delays[l->n++] = next_delay_ms;
    if (l->n == 5)
        l->stop = 1;
}

static void long_running_agent_is_restarted_with_backoff_and_stopped(void **state)
{
    (void)state;
    NEED_ROOT();
    char bundle[128];
    ts_bundle_new(bundle, sizeof bundle);
    struct sbx_config cfg;
    ts_config(&cfg, bundle);
    const char *argv[] = {"/usr/bin/sh", "-c", "exit 1", NULL};
    cfg.argv = argv;
    struct sup_log log = {0};
    struct sbx_supervise_opts opts = {.base_ms = 10,
                                      .max_ms = 40,
                                      .stable_ms = 10000,
                                      .stop = &log.stop,
                                      .on_exit = on_exit_cb,
                                      .arg = &log};
    struct sbx_backoff b;
    char err[SBX_ERR_MAX] = "";
    assert_int_equal(sbx_supervise(&cfg, &opts, &b, err, sizeof err), 0);
    assert_int_equal(log.n, 5);
    const uint64_t want[] = {10, 20, 40, 40, 40};
    for (int i = 0; i < 5; i++)
        assert_int_equal(log.delays[i], want[i]);
    assert_int_equal(b.state, SBX_SUP_STOPPED);
    assert_int_equal(b.restarts, 4);
    ts_rmrf(bundle);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(echo_c_agent_answers_through_the_sdk),
        cmocka_unit_test(hello_sh_agent_answers_one_request),
        cmocka_unit_test(python_session_keeps_a_running_total),
        cmocka_unit_test(session_resumes_in_a_new_process_from_rocksdb),
        cmocka_unit_test(warm_pool_serves_requests),
        cmocka_unit_test(log_lines_and_other_ids_are_skipped),
        cmocka_unit_test(garbage_line_is_a_protocol_error),
        cmocka_unit_test(oversized_line_is_refused),
        cmocka_unit_test(silence_and_early_exit_are_reported),
        cmocka_unit_test(output_flood_is_cut_at_the_total_limit),
        cmocka_unit_test(long_running_agent_is_restarted_with_backoff_and_stopped),
        cmocka_unit_test(request_to_a_dead_agent_fails_without_sigpipe),
        cmocka_unit_test(sdk_answers_malformed_requests_with_errors),
        cmocka_unit_test(setup_failure_is_reported_with_step_and_errno),
    };
    if (getenv("NX_TEST_FILTER"))
        cmocka_set_test_filter(getenv("NX_TEST_FILTER"));
    alarm(TS_PROGRAM_TIMEOUT_S); /* a hang fails the program instead of blocking the runner */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
