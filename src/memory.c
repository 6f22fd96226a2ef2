#include "memory.h"

#include <stdio.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define MEMORY_FROM_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define MEMORY_FROM_SANITIZER 1
#endif
#endif

#if defined(MEMORY_FROM_SANITIZER)
/* AddressSanitizer and ThreadSanitizer replace the allocator, so glibc's
 * figures stay empty; their runtimes export this (declared here: gcc ships no header for it). */
#include <stddef.h>
size_t __sanitizer_get_current_allocated_bytes(void);
#elif defined(HAVE_MALLINFO2)
#include <malloc.h>
#endif

uint64_t memory_resident(void)
{
    FILE *statm = fopen("/proc/self/statm", "r");
    if (statm == NULL)
        return 0;
    unsigned long long size = 0;
    unsigned long long resident = 0;
    int fields = fscanf(statm, "%llu %llu", &size, &resident);
    fclose(statm);
    long page = sysconf(_SC_PAGESIZE);
    if (fields != 2 || page <= 0)
        return 0;
    return (uint64_t)resident * (uint64_t)page;
}

uint64_t memory_heap_in_use(void)
{
#if defined(MEMORY_FROM_SANITIZER)
    return (uint64_t)__sanitizer_get_current_allocated_bytes();
#elif defined(HAVE_MALLINFO2)
    /* Small blocks in use plus blocks the allocator mapped on their own. */
    struct mallinfo2 info = mallinfo2();
    return (uint64_t)info.uordblks + (uint64_t)info.hblkhd;
#else
    return memory_resident();
#endif
}
