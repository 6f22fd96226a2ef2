/* stats — the broker's counters, rendered by /metrics. Plain data: each
 * worker owns one and its thread bumps the fields directly; /metrics sums
 * them (stats_merge), each read on its own worker's thread. */
#ifndef WSBROKER_STATS_H
#define WSBROKER_STATS_H

#include <stddef.h>
#include <stdint.h>

enum stats_reject {
    STATS_REJECT_BAD_REQUEST,
    STATS_REJECT_METHOD,
    STATS_REJECT_VERSION,
    STATS_REJECT_ORIGIN,
    STATS_REJECT_NOT_FOUND,
    STATS_REJECT_BAD_CHANNEL,
    STATS_REJECT_AUTH,
    STATS_REJECT_FORBIDDEN,
    STATS_REJECT_LIMIT,
    STATS_REJECT_TIMEOUT,
    STATS_REJECT_TOO_LARGE,
    STATS_REJECT_ADDRESS_LIMIT,     /* max_connections_per_ip */
    STATS_REJECT_MEMORY,            /* max_memory */
    STATS_REJECT_COUNT,
};

struct stats_route {
    char *path;              /* the route's pattern */
    uint64_t open;
    uint64_t total;
};

struct stats {
    uint64_t http_requests;
    uint64_t rejected[STATS_REJECT_COUNT];
    uint64_t messages_received;
    uint64_t bytes_received;
    uint64_t messages_published;
    uint64_t deliveries;
    uint64_t bytes_sent;
    uint64_t slow_reader_drops;
    uint64_t rate_limited;           /* connections closed for messages_per_second */
    uint64_t memory_refusals;        /* subscriptions and publishes refused for max_memory */
    uint64_t subscription_bytes;     /* gauge: what pubsub subscriptions allocate */
    struct stats_route *routes;
    size_t route_count;
};

/* The label value /metrics uses for reason. */
const char *stats_reject_name(enum stats_reject reason);

/* Index in stats->routes of the route with pattern path, created on first
 * use; -1 when out of memory. An index (not a pointer) stays valid as the
 * array grows. Routes outlive reloads that remove them, so their totals
 * never go backwards. */
long stats_route_index(struct stats *stats, const char *path);

/* Adds every counter of from to into; routes are matched by pattern and
 * added when new. Returns 0, or -1 when a route could not be added (out of
 * memory; the rest is still summed). */
int stats_merge(struct stats *into, const struct stats *from);

void stats_free(struct stats *stats);

#endif
