/*
 * driver_harness.c - runs one fuzz harness (fuzz_harness.h) on a few thousand
 * deterministic inputs in every `scons test`, under ASan in that variant:
 * random bytes, the harness's valid seeds, the seeds with random byte edits,
 * and the harness's regression inputs. Linked once per harness. Not a fuzzer:
 * the real ones are `scons fuzz` then build/fuzz/fuzz_<name>.
 *
 * `<driver> --seeds DIR` writes the seeds as files into DIR (an initial corpus
 * for the real fuzzer) and exits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "tests/fuzz/fuzz_harness.h"

/* FUZZ_DRIVER_DIV (set per harness by the SConscript) divides both counts
 * for harnesses whose inputs are costly (signatures on every command). */
#ifndef FUZZ_DRIVER_DIV
#define FUZZ_DRIVER_DIV 1
#endif
#define RANDOM_INPUTS (2000 / FUZZ_DRIVER_DIV)
#define MUTATED_INPUTS (3000 / FUZZ_DRIVER_DIV)
#define RANDOM_INPUT_MAX 600
#define MAX_EDITS 8

static size_t quick_div(void)
{
    const char *q = getenv("NX_SIM_QUICK");
    return q && *q == '1' ? 4 : 1;
}

static size_t seed_count(void)
{
    static uint8_t buf[FUZZ_INPUT_MAX];
    size_t n = 0;
    while (fuzz_seed(n, buf, sizeof buf) > 0)
        n++;
    return n;
}

static void random_inputs_hold_invariants(void **state)
{
    (void)state;
    static uint8_t buf[RANDOM_INPUT_MAX];
    struct nx_rng rng;
    nx_rng_seed(&rng, 11);
    for (size_t i = 0; i < RANDOM_INPUTS / quick_div(); i++) {
        size_t n = nx_rng_below(&rng, RANDOM_INPUT_MAX + 1);
        for (size_t j = 0; j < n; j++)
            buf[j] = (uint8_t)nx_rng_next(&rng);
        LLVMFuzzerTestOneInput(buf, n);
    }
}

static void valid_seeds_hold_invariants(void **state)
{
    (void)state;
    static uint8_t buf[FUZZ_INPUT_MAX];
    size_t n_seeds = seed_count();
    assert_true(n_seeds > 0);
    for (size_t i = 0; i < n_seeds; i++)
        LLVMFuzzerTestOneInput(buf, fuzz_seed(i, buf, sizeof buf));
}

static void mutated_seeds_hold_invariants(void **state)
{
    (void)state;
    static uint8_t buf[FUZZ_INPUT_MAX];
    struct nx_rng rng;
    nx_rng_seed(&rng, 12);
    size_t n_seeds = seed_count();
    for (size_t i = 0; i < MUTATED_INPUTS / quick_div(); i++) {
        size_t n = fuzz_seed(i % n_seeds, buf, sizeof buf);
        uint64_t edits = 1 + nx_rng_below(&rng, MAX_EDITS);
        for (uint64_t e = 0; e < edits && n > 0; e++) {
            size_t at = nx_rng_below(&rng, n);
            switch (nx_rng_below(&rng, 4)) {
            case 0: /* truncate */
                n = at;
                break;
            case 1: /* a small change, as to a length or a count */
                buf[at] = (uint8_t)(buf[at] + 1 - 2 * (int)nx_rng_below(&rng, 2));
                break;
            default:
                buf[at] ^= (uint8_t)(1u << nx_rng_below(&rng, 8));
                break;
            }
        }
        LLVMFuzzerTestOneInput(buf, n);
    }
}

static void regressions_hold_invariants(void **state)
{
    (void)state;
    size_t n = 0;
    const struct fuzz_regression *r = fuzz_regressions(&n);
    for (size_t i = 0; i < n; i++) {
        print_message("regression: %s\n", r[i].what);
        LLVMFuzzerTestOneInput(r[i].data, r[i].len);
    }
}

static int write_seeds(const char *dir)
{
    static uint8_t buf[FUZZ_INPUT_MAX];
    for (size_t i = 0;; i++) {
        size_t n = fuzz_seed(i, buf, sizeof buf);
        if (n == 0)
            return 0;
        char path[512];
        snprintf(path, sizeof path, "%s/seed-%04zu", dir, i);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(buf, 1, n, f) != n) {
            perror(path);
            if (f)
                fclose(f);
            return 1;
        }
        fclose(f);
    }
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--seeds") == 0)
        return write_seeds(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(random_inputs_hold_invariants),
        cmocka_unit_test(valid_seeds_hold_invariants),
        cmocka_unit_test(mutated_seeds_hold_invariants),
        cmocka_unit_test(regressions_hold_invariants),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
