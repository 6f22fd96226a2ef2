/* fuzz.h — the entry point every fuzz target defines and libFuzzer calls
 * once per input. Returns 0; a failed check aborts. */
#ifndef WSBROKER_FUZZ_H
#define WSBROKER_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
