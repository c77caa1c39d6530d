/*
 * driver_envelope.c - runs the envelope fuzz harness on a few thousand
 * deterministic inputs (random bytes, random sealed-and-edited envelopes,
 * valid envelopes with random byte flips), so the harness and its invariants
 * run in every `scons test`, under ASan in that variant. Not a fuzzer: the
 * real one is `scons fuzz` then build/fuzz/fuzz_envelope.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "tests/fuzz/fuzz_envelope.h"

#define INPUT_MAX 600

static size_t quick_div(void)
{
    const char *q = getenv("NX_SIM_QUICK");
    return q && *q == '1' ? 4 : 1;
}

static size_t random_input(struct nx_rng *rng, uint8_t *buf, uint8_t mode)
{
    size_t n = 1 + nx_rng_below(rng, INPUT_MAX);
    for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)nx_rng_next(rng);
    buf[0] = (uint8_t)((buf[0] & ~1u) | mode);
    return n;
}

static void random_raw_inputs_hold_invariants(void **state)
{
    (void)state;
    struct nx_rng rng;
    uint8_t buf[INPUT_MAX + 1];
    nx_rng_seed(&rng, 1);
    for (size_t i = 0; i < 5000 / quick_div(); i++)
        LLVMFuzzerTestOneInput(buf, random_input(&rng, buf, FUZZ_MODE_RAW));
}

static void sealed_and_edited_inputs_hold_invariants(void **state)
{
    (void)state;
    struct nx_rng rng;
    uint8_t buf[INPUT_MAX + 1];
    nx_rng_seed(&rng, 2);
    for (size_t i = 0; i < 5000 / quick_div(); i++) {
        size_t n = random_input(&rng, buf, FUZZ_MODE_SEALED);
        if (n > 14) {
            /* keep the timestamp inside the window most of the time */
            buf[11] = (uint8_t)nx_rng_below(&rng, 20);
            buf[12] = 0;
            buf[13] = (uint8_t)nx_rng_below(&rng, n - 14);
            /* a third of the inputs carry no edits: they must open */
            if (i % 3 == 0)
                n = 14 + buf[13];
        }
        LLVMFuzzerTestOneInput(buf, n);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(random_raw_inputs_hold_invariants),
        cmocka_unit_test(sealed_and_edited_inputs_hold_invariants),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
