/* hist: fixed-bucket latency histogram (log-linear, about 3% precision),
 * so percentiles of millions of samples need no sorting and no memory per
 * sample. */
#ifndef WSLOAD_HIST_H
#define WSLOAD_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 5                       /* 32 buckets per power of two */
#define HIST_MAX_EXP 42                       /* up to 2^42 ns, about 73 min */
#define HIST_BUCKETS ((HIST_MAX_EXP + 1) << HIST_SUB_BITS)

struct hist {
    uint64_t count;
    uint64_t max;
    uint64_t bucket[HIST_BUCKETS];
};

/* Zeroes h. */
void hist_init(struct hist *h);
/* Records one value (nanoseconds); values past the range go in the last
 * bucket, though max stays exact. */
void hist_add(struct hist *h, uint64_t v);
/* Adds the counts of src into dst. */
void hist_merge(struct hist *dst, const struct hist *src);
/* The value at quantile q (0..1): the upper bound of the bucket holding it,
 * never above max. 0 for an empty histogram. */
uint64_t hist_quantile(const struct hist *h, double q);

#endif
