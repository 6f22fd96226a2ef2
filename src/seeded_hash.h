/* seeded_hash — hashing for tables whose keys clients choose (channel
 * names, client addresses): a random seed per table, so nobody can pick
 * keys that all land in one bucket. Not cryptographic. */
#ifndef WSBROKER_SEEDED_HASH_H
#define WSBROKER_SEEDED_HASH_H

#include <stddef.h>
#include <stdint.h>

/* Fills out with random bytes (the kernel's; when that fails, something
 * that still differs per run with address-space randomisation). */
void seeded_hash_random(void *out, size_t length);

/* FNV-1a of length bytes over a seeded basis, finished with a 64-bit
 * mixer so the low bits used as a bucket index depend on every byte. */
uint64_t seeded_hash_bytes(uint64_t seed, const void *data, size_t length);

#endif
