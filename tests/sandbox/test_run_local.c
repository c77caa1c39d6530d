/*
 * `nexus agent run-local` (node/cmd_agent_local.c) called in a child process
 * with stdout and stderr captured: help text, exit codes for usage errors,
 * a successful run in both output formats, and a failing run.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "node/cmd_agent_local.h"
#include "tests/sandbox/common.h"

struct out {
    int code;
    char text[16384];
};

/* Runs cmd_agent_run_local(argv) in a child; stdout+stderr land in o->text. */
static void run_cli(const char *const *argv, struct out *o)
{
    char path[] = "/tmp/nx-sbx-cli-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        int argc = 0;
        while (argv[argc])
            argc++;
        int rc = cmd_agent_run_local(argc, (char **)argv);
        fflush(stdout);
        fflush(stderr);
        _exit(rc);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    o->code = WEXITSTATUS(status);
    ssize_t n = pread(fd, o->text, sizeof o->text - 1, 0);
    o->text[n > 0 ? n : 0] = '\0';
    close(fd);
}

static void help_lists_every_option_with_its_default(void **state)
{
    (void)state;
    struct out o;
    const char *argv[] = {"run-local", "--help", NULL};
    run_cli(argv, &o);
    assert_int_equal(o.code, 0);
    static const char *const want[] = {"--input JSON|-",  "--context JSON", "--timeout MS",
                                       "--allow-network", "--json",         "--help"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(o.text, want[i]))
            fail_msg("help lacks %s", want[i]);
    assert_non_null(strstr(o.text, "(default: null)"));
    assert_non_null(strstr(o.text, "otherwise the agent has none"));
}

static void usage_errors_exit_2(void **state)
{
    (void)state;
    struct out o;
    const char *no_bundle[] = {"run-local", NULL};
    run_cli(no_bundle, &o);
    assert_int_equal(o.code, CMD_AGENT_USAGE);
    const char *bad_opt[] = {"run-local", "--bogus", "x", NULL};
    run_cli(bad_opt, &o);
    assert_int_equal(o.code, CMD_AGENT_USAGE);
    const char *bad_timeout[] = {"run-local", "--timeout", "-5", "x", NULL};
    run_cli(bad_timeout, &o);
    assert_int_equal(o.code, CMD_AGENT_USAGE);
    const char *missing[] = {"run-local", "/nonexistent-bundle", NULL};
    run_cli(missing, &o);
    assert_int_equal(o.code, CMD_AGENT_USAGE);
    assert_non_null(strstr(o.text, "manifest.json"));
    const char *bad_input[] = {"run-local", "--input", "{", NX_BUILT_AGENTS "/echo-c", NULL};
    run_cli(bad_input, &o);
    assert_int_equal(o.code, CMD_AGENT_USAGE);
}

static void echo_agent_runs_and_prints_output_and_usage(void **state)
{
    (void)state;
    if (!ts_can_sandbox())
        skip();
    struct out o;
    const char *argv[] = {"run-local", NX_BUILT_AGENTS "/echo-c", "--input", "{\"a\":1}", NULL};
    run_cli(argv, &o);
    assert_int_equal(o.code, 0);
    assert_non_null(strstr(o.text, "\"echo\""));
    assert_non_null(strstr(o.text, "--- usage"));
    assert_non_null(strstr(o.text, "peak memory:"));
    const char *jargv[] = {"run-local", "--json", "--input", "7", NX_BUILT_AGENTS "/echo-c", NULL};
    run_cli(jargv, &o);
    assert_int_equal(o.code, 0);
    json_error_t jerr;
    json_t *all = json_loads(o.text, 0, &jerr);
    if (!all)
        fail_msg("not JSON: %s", o.text);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(all, "output"), "echo")),
                     7);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(all, "context"), "calls")),
                     1);
    assert_non_null(json_object_get(json_object_get(all, "usage"), "cpu_total_us"));
    json_decref(all);
}

static void failing_agent_exits_1(void **state)
{
    (void)state;
    if (!ts_can_sandbox())
        skip();
    char bundle[128];
    ts_bundle_new(bundle, sizeof bundle);
    ts_bundle_put(bundle, "manifest.json",
                  "{\"name\":\"slow\",\"version\":\"1\",\"kind\":\"stateless\","
                  "\"entrypoint\":[\"/usr/bin/sleep\",\"10\"]}",
                  0644);
    struct out o;
    const char *argv[] = {"run-local", "--timeout", "200", "--json", bundle, NULL};
    run_cli(argv, &o);
    assert_int_equal(o.code, CMD_AGENT_FAILED);
    json_error_t jerr;
    json_t *all = json_loads(o.text, 0, &jerr);
    if (!all)
        fail_msg("not JSON: %s", o.text);
    assert_true(json_is_true(json_object_get(json_object_get(all, "usage"), "timed_out")));
    assert_non_null(json_object_get(all, "error"));
    json_decref(all);
    ts_rmrf(bundle);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(help_lists_every_option_with_its_default),
        cmocka_unit_test(usage_errors_exit_2),
        cmocka_unit_test(echo_agent_runs_and_prints_output_and_usage),
        cmocka_unit_test(failing_agent_exits_1),
    };
    alarm(TS_PROGRAM_TIMEOUT_S); /* a hang fails the program instead of blocking the runner */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
