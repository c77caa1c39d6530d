/*
 * fuzz_envelope.h - the NCAP envelope fuzz harness, shared by the libFuzzer
 * build (scons fuzz) and the deterministic driver that runs in scons test.
 */
#ifndef NX_FUZZ_ENVELOPE_H
#define NX_FUZZ_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

/* Input layout (docs in fuzz_envelope.c). Returns 0; aborts on a broken invariant. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* First byte of an input that fuzz_envelope.c seals into a valid envelope and then edits. */
#define FUZZ_MODE_RAW 0
#define FUZZ_MODE_SEALED 1

#endif
