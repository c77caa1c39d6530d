/* Unit tests of node/cli.c: one option table drives parsing, defaults, env and config. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "node/cli.h"

static const struct cli_opt opts[] = {
    {"api", "HOST:PORT", "127.0.0.1:7401", "NX_TEST_API", "api", false},
    {"peer", "P", NULL, NULL, "peer", true},
    {"json", NULL, NULL, NULL, "json", false},
    {"count", "N", "5", NULL, "count", false},
};
static const struct cli_cmd cmd = {"test", "", "a test command", opts, NX_ARRAY_LEN(opts)};

static int parse(struct cli_values *v, int argc, const char **argv)
{
    return cli_parse(&cmd, argc, (char **)argv, v);
}

static void defaults_then_env_then_flags(void **state)
{
    (void)state;
    struct cli_values v;
    const char *a0[] = {"test", NULL};
    unsetenv("NX_TEST_API");
    assert_int_equal(parse(&v, 1, a0), CLI_OK);
    assert_string_equal(cli_get(&cmd, &v, "api"), "127.0.0.1:7401");
    assert_false(cli_flag(&cmd, &v, "json"));
    cli_values_free(&v);
    setenv("NX_TEST_API", "10.0.0.1:1", 1);
    assert_int_equal(parse(&v, 1, a0), CLI_OK);
    assert_string_equal(cli_get(&cmd, &v, "api"), "10.0.0.1:1");
    cli_values_free(&v);
    const char *a1[] = {"test", "--api", "1.2.3.4:5", "--json", NULL};
    assert_int_equal(parse(&v, 4, a1), CLI_OK);
    assert_string_equal(cli_get(&cmd, &v, "api"), "1.2.3.4:5");
    assert_true(cli_flag(&cmd, &v, "json"));
    cli_values_free(&v);
    unsetenv("NX_TEST_API");
}

static void repeated_option_joins_values(void **state)
{
    (void)state;
    struct cli_values v;
    const char *a[] = {"test", "--peer", "x", "--peer", "y", "pos", NULL};
    assert_int_equal(parse(&v, 6, a), CLI_OK);
    assert_string_equal(cli_get(&cmd, &v, "peer"), "x\ny");
    assert_int_equal(v.first_positional, 5);
    cli_values_free(&v);
}

static void bad_input_is_an_error(void **state)
{
    (void)state;
    struct cli_values v;
    const char *unknown[] = {"test", "--nope", NULL};
    assert_int_equal(parse(&v, 2, unknown), CLI_ERROR);
    cli_values_free(&v);
    const char *missing[] = {"test", "--api", NULL};
    assert_int_equal(parse(&v, 2, missing), CLI_ERROR);
    cli_values_free(&v);
    const char *twice[] = {"test", "--json", "--json", NULL};
    assert_int_equal(parse(&v, 3, twice), CLI_ERROR);
    cli_values_free(&v);
    const char *num[] = {"test", "--count", "12x", NULL};
    assert_int_equal(parse(&v, 3, num), CLI_OK);
    unsigned long long n = 0;
    assert_false(cli_get_u64(&cmd, &v, "count", 100, &n));
    cli_values_free(&v);
}

static void config_file_fills_what_flags_did_not_set(void **state)
{
    (void)state;
    char path[] = "/tmp/nx-unit-cli-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "{\"api\": \"9.9.9.9:9\", \"count\": 7, \"json\": true}";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    struct cli_values v;
    const char *a[] = {"test", "--api", "1.1.1.1:1", NULL};
    assert_int_equal(parse(&v, 3, a), CLI_OK);
    assert_true(cli_apply_config_file(&cmd, &v, path));
    assert_string_equal(cli_get(&cmd, &v, "api"), "1.1.1.1:1");
    assert_string_equal(cli_get(&cmd, &v, "count"), "7");
    assert_true(cli_flag(&cmd, &v, "json"));
    cli_values_free(&v);
    FILE *f = fopen(path, "w");
    fputs("{\"unknown\": 1}", f);
    fclose(f);
    assert_int_equal(parse(&v, 1, a), CLI_OK);
    assert_false(cli_apply_config_file(&cmd, &v, path));
    cli_values_free(&v);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_then_env_then_flags),
        cmocka_unit_test(repeated_option_joins_values),
        cmocka_unit_test(bad_input_is_an_error),
        cmocka_unit_test(config_file_fills_what_flags_did_not_set),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
