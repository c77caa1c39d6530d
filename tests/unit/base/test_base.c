/* Unit tests of base/: error text, hex, PRNG determinism and range. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "base/base.h"

static void every_error_code_has_text(void **state)
{
    (void)state;
    for (int e = 0; e > -NX_ERR__COUNT; e--)
        assert_string_not_equal(nx_strerror(e), "unknown error");
    assert_string_equal(nx_strerror(1), "unknown error");
    assert_string_equal(nx_strerror(-NX_ERR__COUNT), "unknown error");
}

static void hex_round_trip_and_rejects_bad_digits(void **state)
{
    (void)state;
    uint8_t in[4] = {0x00, 0xab, 0x7f, 0xff}, out[4];
    char hex[9];
    nx_hex_encode(hex, in, sizeof in);
    assert_string_equal(hex, "00ab7fff");
    assert_int_equal(nx_hex_decode(out, sizeof out, hex), NX_OK);
    assert_memory_equal(in, out, sizeof in);
    assert_int_equal(nx_hex_decode(out, sizeof out, "00ab7fzz"), NX_ERR_INVAL);
    assert_int_equal(nx_hex_decode(out, sizeof out, "00ab7f"), NX_ERR_INVAL);
    assert_int_equal(nx_hex_decode(out, sizeof out, "00ab7fff00"), NX_ERR_INVAL);
}

static void rng_same_seed_same_sequence(void **state)
{
    (void)state;
    struct nx_rng a, b, c;
    nx_rng_seed(&a, 42);
    nx_rng_seed(&b, 42);
    nx_rng_seed(&c, 43);
    int differ = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = nx_rng_next(&a);
        assert_int_equal(x, nx_rng_next(&b));
        differ |= x != nx_rng_next(&c);
    }
    assert_true(differ);
}

static void rng_below_stays_in_range_and_covers_it(void **state)
{
    (void)state;
    struct nx_rng r;
    nx_rng_seed(&r, 7);
    int seen[10] = {0};
    for (int i = 0; i < 10000; i++) {
        uint64_t v = nx_rng_below(&r, 10);
        assert_true(v < 10);
        seen[v]++;
        double u = nx_rng_unit(&r);
        assert_true(u >= 0.0 && u < 1.0);
    }
    for (int i = 0; i < 10; i++)
        assert_true(seen[i] > 800 && seen[i] < 1200);
}

static void log_level_names_parse(void **state)
{
    (void)state;
    assert_int_equal(nx_log_level_parse("debug"), NX_LOG_DEBUG);
    assert_int_equal(nx_log_level_parse("error"), NX_LOG_ERROR);
    assert_int_equal(nx_log_level_parse("loud"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_error_code_has_text),
        cmocka_unit_test(hex_round_trip_and_rejects_bad_digits),
        cmocka_unit_test(rng_same_seed_same_sequence),
        cmocka_unit_test(rng_below_stays_in_range_and_covers_it),
        cmocka_unit_test(log_level_names_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
