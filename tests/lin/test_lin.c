/*
 * Unit tests of the linearizability checker (tests/lin/lin.h): known
 * linearizable and known non-linearizable histories, unknown outcomes, the
 * text format, and a large generated history that must pass quickly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/lin/lin.h"

/* Builds a history from text lines and checks it. */
static bool check_lines(const char *const *lines, size_t n, char *why, size_t why_len)
{
    struct lin_history h;
    lin_history_init(&h);
    char err[256];
    for (size_t i = 0; i < n; i++) {
        int rc = lin_history_parse_line(&h, lines[i], (uint32_t)i + 1, err, sizeof err);
        assert_true(rc == NX_OK || rc == NX_ERR_NOT_FOUND);
    }
    struct lin_result res;
    assert_int_equal(lin_check(&h, 0, &res), NX_OK);
    assert_false(res.budget_exceeded);
    if (why)
        snprintf(why, why_len, "%s", res.explanation);
    lin_history_free(&h);
    return res.linearizable;
}

#define CHECK(lines) check_lines(lines, NX_ARRAY_LEN(lines), NULL, 0)

static void sequential_history_is_linearizable(void **state)
{
    (void)state;
    const char *h[] = {
        "# client op key value invoke return outcome",
        "1 put x a 0 10 ok",
        "1 get x a 20 30 ok",
        "2 delete x - 40 50 ok",
        "2 get x - 60 70 ok",
        "1 get y - 80 90 ok",
    };
    assert_true(CHECK(h));
}

static void stale_read_after_completed_write_is_not_linearizable(void **state)
{
    (void)state;
    const char *h[] = {
        "1 put x a 0 10 ok",
        "1 put x b 20 30 ok",
        "2 get x a 40 50 ok",
    };
    char why[LIN_EXPLAIN_BYTES];
    assert_false(check_lines(h, NX_ARRAY_LEN(h), why, sizeof why));
    assert_non_null(strstr(why, "key x"));
    assert_non_null(strstr(why, "line 3"));
}

static void concurrent_write_may_be_seen_or_not(void **state)
{
    (void)state;
    const char *seen[] = {"1 put x a 0 100 ok", "2 get x a 10 20 ok", "3 get x - 30 40 ok"};
    /* a then absent is impossible: once a read saw a, a later read must too */
    assert_false(CHECK(seen));
    const char *ok[] = {"1 put x a 0 100 ok", "2 get x - 10 20 ok", "3 get x a 30 40 ok"};
    assert_true(CHECK(ok));
    const char *both[] = {"1 put x a 0 100 ok", "2 put x b 0 100 ok", "3 get x b 110 120 ok",
                          "3 get x b 130 140 ok"};
    assert_true(CHECK(both));
    const char *flip[] = {"1 put x a 0 100 ok", "2 put x b 0 100 ok", "3 get x b 110 120 ok",
                          "3 get x a 130 140 ok"};
    assert_false(CHECK(flip));
}

static void read_of_value_never_written_is_not_linearizable(void **state)
{
    (void)state;
    const char *h[] = {"1 put x a 0 10 ok", "2 get x z 20 30 ok"};
    assert_false(CHECK(h));
}

static void unknown_write_may_take_effect_late_or_never(void **state)
{
    (void)state;
    const char *late[] = {"1 put x a 0 - unknown", "2 get x - 100 110 ok", "2 get x a 200 210 ok"};
    assert_true(CHECK(late));
    const char *never[] = {"1 put x a 0 5 unknown", "2 get x - 100 110 ok"};
    assert_true(CHECK(never));
    /* but it takes effect once: a then absent again (no delete) is impossible */
    const char *twice[] = {"1 put x a 0 - unknown", "2 get x a 100 110 ok", "2 get x - 200 210 ok"};
    assert_false(CHECK(twice));
    /* an unknown write cannot take effect before it was invoked */
    const char *early[] = {"2 get x a 0 10 ok", "1 put x a 20 - unknown"};
    assert_false(CHECK(early));
}

static void failed_ops_have_no_effect(void **state)
{
    (void)state;
    const char *h[] = {"1 put x a 0 10 fail", "2 get x a 20 30 ok"};
    assert_false(CHECK(h));
    const char *g[] = {"1 put x a 0 10 ok", "2 get x q 20 30 unknown", "2 get x a 40 50 ok",
                       "3 put x z 60 - fail"};
    assert_true(CHECK(g));
}

static void keys_are_checked_independently(void **state)
{
    (void)state;
    const char *h[] = {"1 put x a 0 10 ok", "1 put y b 0 10 ok", "2 get y b 20 30 ok",
                       "2 get x - 20 30 ok"};
    assert_false(CHECK(h));
    const char *g[] = {"1 put x a 0 10 ok", "1 put y b 0 10 ok", "2 get y b 20 30 ok",
                       "2 get x a 20 30 ok"};
    assert_true(CHECK(g));
}

static void malformed_lines_are_rejected_with_the_line_number(void **state)
{
    (void)state;
    const char *bad[] = {
        "1 put x a 0 10",    "1 jump x a 0 10 ok",
        "1 put x a 10 0 ok", "1 put x - 0 10 ok",
        "x put x a 0 10 ok", "1 put x a 0 10 maybe",
        "1 put x a 0 - ok",  "1 put x a 0 99999999999999999999999 ok",
    };
    for (size_t i = 0; i < NX_ARRAY_LEN(bad); i++) {
        struct lin_history h;
        lin_history_init(&h);
        char err[256] = "";
        assert_int_equal(lin_history_parse_line(&h, bad[i], 7, err, sizeof err), NX_ERR_DECODE);
        assert_non_null(strstr(err, "line 7"));
        lin_history_free(&h);
    }
}

static void file_history_is_read_and_checked(void **state)
{
    (void)state;
    char path[] = "/tmp/nx_lin_testXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *fp = fdopen(fd, "w");
    fprintf(fp, "# from a real cluster\n1 put k1 v1 100 200 ok\n\n2 get k1 v1 300 400 ok\n");
    fprintf(fp, "3 delete k1 - 500 600 unknown\n2 get k1 v1 700 800 ok\n");
    fclose(fp);
    struct lin_history h;
    lin_history_init(&h);
    char err[256];
    assert_int_equal(lin_history_read_file(&h, path, err, sizeof err), NX_OK);
    assert_int_equal(h.n, 4);
    struct lin_result res;
    assert_int_equal(lin_check(&h, 0, &res), NX_OK);
    assert_true(res.linearizable);
    lin_history_free(&h);
    unlink(path);
    lin_history_init(&h);
    assert_int_equal(lin_history_read_file(&h, "/nonexistent/x", err, sizeof err), NX_ERR_IO);
    lin_history_free(&h);
}

/*
 * A generated history: 8 clients on 3 keys, each op has an interval and an
 * atomic point inside it where it really happened; some writes are unknown.
 * It is linearizable by construction; one corrupted read makes it not.
 */
static void generated_history(struct lin_history *h, uint64_t seed, size_t n_ops, bool corrupt)
{
    struct nx_rng rng;
    nx_rng_seed(&rng, seed);
    struct point {
        uint64_t at;
        size_t op;
    } *pts = calloc(n_ops, sizeof *pts);
    struct lin_op *ops = calloc(n_ops, sizeof *ops);
    uint64_t client_free[8] = {0};
    for (size_t i = 0; i < n_ops; i++) {
        uint32_t c = (uint32_t)nx_rng_below(&rng, 8);
        uint64_t inv = client_free[c] + nx_rng_below(&rng, 50);
        uint64_t ret = inv + 1 + nx_rng_below(&rng, 200);
        client_free[c] = ret + 1;
        ops[i] = (struct lin_op){.client = c,
                                 .kind = (enum lin_kind)nx_rng_below(&rng, 3),
                                 .key = nx_rng_below(&rng, 3),
                                 .value = (int64_t)i,
                                 .invoke_us = inv,
                                 .return_us = ret,
                                 .outcome = LIN_OK};
        pts[i] = (struct point){inv + nx_rng_below(&rng, ret - inv + 1), i};
    }
    /* replay in point order to fill the observed values */
    for (size_t i = 1; i < n_ops; i++)
        for (size_t j = i; j > 0 && pts[j].at < pts[j - 1].at; j--) {
            struct point t = pts[j];
            pts[j] = pts[j - 1];
            pts[j - 1] = t;
        }
    int64_t reg[3] = {LIN_ABSENT, LIN_ABSENT, LIN_ABSENT};
    for (size_t k = 0; k < n_ops; k++) {
        struct lin_op *op = &ops[pts[k].op];
        if (op->kind == LIN_PUT)
            reg[op->key] = op->value;
        else if (op->kind == LIN_DELETE)
            reg[op->key] = LIN_ABSENT;
        else
            op->value = reg[op->key];
    }
    for (size_t i = 0; i < n_ops; i++) {
        if (ops[i].kind != LIN_GET && nx_rng_below(&rng, 20) == 0)
            ops[i].outcome = LIN_UNKNOWN;
    }
    if (corrupt) {
        for (size_t i = n_ops / 2; i < n_ops; i++) {
            if (ops[i].kind == LIN_GET && ops[i].value != LIN_ABSENT) {
                ops[i].value = 1000000; /* never written */
                break;
            }
        }
    }
    for (size_t i = 0; i < n_ops; i++)
        assert_int_equal(lin_history_add(h, &ops[i]), NX_OK);
    free(ops);
    free(pts);
}

static void generated_linearizable_history_passes_and_corruption_is_caught(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        for (int corrupt = 0; corrupt <= 1; corrupt++) {
            struct lin_history h;
            lin_history_init(&h);
            generated_history(&h, seed, 600, corrupt);
            struct lin_result res;
            assert_int_equal(lin_check(&h, 0, &res), NX_OK);
            assert_false(res.budget_exceeded);
            assert_int_equal(res.linearizable, !corrupt);
            lin_history_free(&h);
        }
    }
}

static void many_unknown_writes_are_checked_quickly(void **state)
{
    (void)state;
    /* 60 writes in doubt, overlapping everything, plus reads that saw two of them */
    struct lin_history h;
    lin_history_init(&h);
    for (uint32_t i = 0; i < 60; i++) {
        struct lin_op op = {.client = i,
                            .kind = LIN_PUT,
                            .key = 1,
                            .value = i,
                            .invoke_us = i,
                            .outcome = LIN_UNKNOWN};
        assert_int_equal(lin_history_add(&h, &op), NX_OK);
    }
    struct lin_op r1 = {.client = 99,
                        .kind = LIN_GET,
                        .key = 1,
                        .value = 7,
                        .invoke_us = 100,
                        .return_us = 110,
                        .outcome = LIN_OK};
    struct lin_op r2 = r1;
    r2.value = 42;
    r2.invoke_us = 120;
    r2.return_us = 130;
    assert_int_equal(lin_history_add(&h, &r1), NX_OK);
    assert_int_equal(lin_history_add(&h, &r2), NX_OK);
    struct lin_result res;
    assert_int_equal(lin_check(&h, 0, &res), NX_OK);
    assert_true(res.linearizable);
    assert_false(res.budget_exceeded);
    /* and 7 again after 42, with no write of 7 in between, is impossible */
    struct lin_op r3 = r1;
    r3.invoke_us = 140;
    r3.return_us = 150;
    assert_int_equal(lin_history_add(&h, &r3), NX_OK);
    assert_int_equal(lin_check(&h, 0, &res), NX_OK);
    assert_false(res.linearizable);
    lin_history_free(&h);
}

static char lin_check_path[512];

/* Runs lin_check on a history; returns its exit code. */
static int run_cli(const char *history)
{
    char path[] = "/tmp/nx_lin_cliXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *fp = fdopen(fd, "w");
    fputs(history, fp);
    fclose(fp);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "%s %s >/dev/null 2>&1", lin_check_path, path);
    int st = system(cmd);
    unlink(path);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void lin_check_cli_exit_codes(void **state)
{
    (void)state;
    if (access(lin_check_path, X_OK) != 0)
        skip();
    assert_int_equal(run_cli("1 put x a 0 10 ok\n2 get x a 20 30 ok\n"), 0);
    assert_int_equal(run_cli("1 put x a 0 10 ok\n1 put x b 20 30 ok\n2 get x a 40 50 ok\n"), 1);
    assert_int_equal(run_cli("1 put x a 0 10\n"), 2);
}

int main(int argc, char **argv)
{
    (void)argc;
    /* lin_check is built next to this program (build/<variant>/tests/) */
    snprintf(lin_check_path, sizeof lin_check_path, "%s", argv[0]);
    char *slash = strrchr(lin_check_path, '/');
    if (slash)
        snprintf(slash + 1, sizeof lin_check_path - (size_t)(slash + 1 - lin_check_path),
                 "lin_check");
    else
        snprintf(lin_check_path, sizeof lin_check_path, "./lin_check");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sequential_history_is_linearizable),
        cmocka_unit_test(stale_read_after_completed_write_is_not_linearizable),
        cmocka_unit_test(concurrent_write_may_be_seen_or_not),
        cmocka_unit_test(read_of_value_never_written_is_not_linearizable),
        cmocka_unit_test(unknown_write_may_take_effect_late_or_never),
        cmocka_unit_test(failed_ops_have_no_effect),
        cmocka_unit_test(keys_are_checked_independently),
        cmocka_unit_test(malformed_lines_are_rejected_with_the_line_number),
        cmocka_unit_test(file_history_is_read_and_checked),
        cmocka_unit_test(generated_linearizable_history_passes_and_corruption_is_caught),
        cmocka_unit_test(many_unknown_writes_are_checked_quickly),
        cmocka_unit_test(lin_check_cli_exit_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
