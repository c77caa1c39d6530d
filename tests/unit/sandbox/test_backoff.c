/*
 * Unit tests of the long-running restart policy (struct sbx_backoff): a pure
 * state machine, driven here with made-up times.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "sandbox/sandbox.h"

static void delay_doubles_up_to_the_cap(void **state)
{
    (void)state;
    struct sbx_backoff b;
    sbx_backoff_init(&b, 100, 1000, 60000);
    const uint64_t want[] = {100, 200, 400, 800, 1000, 1000};
    uint64_t now = 0;
    for (size_t i = 0; i < NX_ARRAY_LEN(want); i++) {
        sbx_backoff_on_start(&b, now);
        assert_int_equal(b.state, SBX_SUP_RUNNING);
        now += 10; /* crashes at once */
        assert_int_equal(sbx_backoff_on_exit(&b, now), want[i]);
        assert_int_equal(b.state, SBX_SUP_BACKOFF);
        assert_int_equal(b.restart_at_ms, now + want[i]);
        now = b.restart_at_ms;
    }
    assert_int_equal(b.restarts, NX_ARRAY_LEN(want) - 1);
}

static void a_stable_run_resets_the_delay(void **state)
{
    (void)state;
    struct sbx_backoff b;
    sbx_backoff_init(&b, 100, 1000, 5000);
    sbx_backoff_on_start(&b, 0);
    assert_int_equal(sbx_backoff_on_exit(&b, 1), 100);
    sbx_backoff_on_start(&b, 101);
    assert_int_equal(sbx_backoff_on_exit(&b, 102), 200);
    sbx_backoff_on_start(&b, 302);
    assert_int_equal(sbx_backoff_on_exit(&b, 302 + 5000), 100); /* ran 5 s: fresh start */
}

static void stop_ends_supervision_and_ignores_late_exits(void **state)
{
    (void)state;
    struct sbx_backoff b;
    sbx_backoff_init(&b, 100, 1000, 0);
    sbx_backoff_on_start(&b, 0);
    sbx_backoff_on_stop(&b);
    assert_int_equal(b.state, SBX_SUP_STOPPED);
    assert_int_equal(sbx_backoff_on_exit(&b, 50), 0);
    assert_int_equal(b.state, SBX_SUP_STOPPED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(delay_doubles_up_to_the_cap),
        cmocka_unit_test(a_stable_run_resets_the_delay),
        cmocka_unit_test(stop_ends_supervision_and_ignores_late_exits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
