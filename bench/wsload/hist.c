#include "hist.h"

#include <string.h>

void hist_init(struct hist *h)
{
    memset(h, 0, sizeof *h);
}

/* Values below 2^SUB_BITS get one bucket each; above, a power of two is cut
 * into 2^SUB_BITS equal buckets. */
static unsigned hist_index(uint64_t v)
{
    if (v < (1u << HIST_SUB_BITS))
        return (unsigned)v;
    unsigned exp = 63u - (unsigned)__builtin_clzll(v);       /* >= SUB_BITS */
    unsigned sub = (unsigned)(v >> (exp - HIST_SUB_BITS)) & ((1u << HIST_SUB_BITS) - 1);
    unsigned idx = ((exp - HIST_SUB_BITS + 1) << HIST_SUB_BITS) + sub;
    return idx < HIST_BUCKETS ? idx : HIST_BUCKETS - 1;
}

/* The largest value that falls in bucket idx. */
static uint64_t hist_upper(unsigned idx)
{
    if (idx < (1u << HIST_SUB_BITS))
        return idx;
    unsigned exp = (idx >> HIST_SUB_BITS) + HIST_SUB_BITS - 1;
    uint64_t sub = idx & ((1u << HIST_SUB_BITS) - 1);
    uint64_t width = (uint64_t)1 << (exp - HIST_SUB_BITS);
    return ((uint64_t)1 << exp) + (sub + 1) * width - 1;
}

void hist_add(struct hist *h, uint64_t v)
{
    h->bucket[hist_index(v)]++;
    h->count++;
    if (v > h->max)
        h->max = v;
}

void hist_merge(struct hist *dst, const struct hist *src)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        dst->bucket[i] += src->bucket[i];
    dst->count += src->count;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t hist_quantile(const struct hist *h, double q)
{
    if (h->count == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)h->count);
    if (rank >= h->count)
        rank = h->count - 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen > rank) {
            uint64_t up = hist_upper(i);
            return up < h->max ? up : h->max;
        }
    }
    return h->max;
}
