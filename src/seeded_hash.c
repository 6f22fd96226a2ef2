#include "seeded_hash.h"

#include <string.h>
#include <unistd.h>

void seeded_hash_random(void *out, size_t length)
{
    if (getentropy(out, length) != 0) {
        uintptr_t fallback = (uintptr_t)&fallback;
        memset(out, 0, length);
        memcpy(out, &fallback, length < sizeof(fallback) ? length : sizeof(fallback));
    }
}

uint64_t seeded_hash_bytes(uint64_t seed, const void *data, size_t length)
{
    uint64_t hash = 0xcbf29ce484222325ULL ^ seed;
    const unsigned char *bytes = data;
    for (size_t i = 0; i < length; i++) {
        hash ^= bytes[i];
        hash *= 0x100000001b3ULL;
    }
    hash ^= hash >> 33;
    hash *= 0xff51afd7ed558ccdULL;
    hash ^= hash >> 33;
    return hash;
}
