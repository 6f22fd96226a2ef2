/* memory — how much memory the process is using, for limits.max_memory
 * and /metrics. */
#ifndef WSBROKER_MEMORY_H
#define WSBROKER_MEMORY_H

#include <stdint.h>

/* Bytes of heap handed out by the allocator and not yet freed, every
 * library's allocations included (glibc's mallinfo2). Where that is not
 * available, the resident set size instead. 0 when neither can be read. */
uint64_t memory_heap_in_use(void);

/* The resident set size in bytes (from /proc/self/statm); 0 when unknown. */
uint64_t memory_resident(void);

#endif
