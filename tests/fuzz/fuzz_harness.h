/*
 * fuzz_harness.h - what every fuzz harness of tests/fuzz/ (but the envelope
 * one, which has its own driver) offers: the libFuzzer entry point, and valid
 * seed inputs made in code, so that no corpus files are committed. The same
 * harness object links into the libFuzzer binary (scons fuzz) and into the
 * deterministic cmocka driver (driver_harness.c) that runs in scons test.
 */
#ifndef NX_FUZZ_HARNESS_H
#define NX_FUZZ_HARNESS_H

#include <stddef.h>
#include <stdint.h>

/* Largest input the driver makes (seeds included). */
#define FUZZ_INPUT_MAX 4096

/* Runs one input. Returns 0; aborts on a broken invariant (a finding). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Writes valid seed input number i into buf (cap bytes, at least
 * FUZZ_INPUT_MAX); returns its length, or 0 when there is no seed i. Seeds are
 * deterministic in i.
 */
size_t fuzz_seed(size_t i, uint8_t *buf, size_t cap);

/* A known input that once broke an invariant: the driver replays each one. */
struct fuzz_regression {
    const char *what; /* module, function and what went wrong */
    const uint8_t *data;
    size_t len;
};

/* The harness's regression inputs (*n of them; may be 0). */
const struct fuzz_regression *fuzz_regressions(size_t *n);

#endif
