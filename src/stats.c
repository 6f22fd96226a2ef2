#include "stats.h"

#include <stdlib.h>
#include <string.h>

static const char *const stats_reject_names[STATS_REJECT_COUNT] = {
    [STATS_REJECT_BAD_REQUEST] = "bad_request",
    [STATS_REJECT_METHOD] = "method",
    [STATS_REJECT_VERSION] = "version",
    [STATS_REJECT_ORIGIN] = "origin",
    [STATS_REJECT_NOT_FOUND] = "not_found",
    [STATS_REJECT_BAD_CHANNEL] = "bad_channel",
    [STATS_REJECT_AUTH] = "auth",
    [STATS_REJECT_FORBIDDEN] = "forbidden",
    [STATS_REJECT_LIMIT] = "limit",
    [STATS_REJECT_TIMEOUT] = "timeout",
    [STATS_REJECT_TOO_LARGE] = "too_large",
    [STATS_REJECT_ADDRESS_LIMIT] = "address_limit",
    [STATS_REJECT_MEMORY] = "memory",
};

const char *stats_reject_name(enum stats_reject reason)
{
    return reason < STATS_REJECT_COUNT ? stats_reject_names[reason] : "unknown";
}

long stats_route_index(struct stats *stats, const char *path)
{
    for (size_t i = 0; i < stats->route_count; i++) {
        if (strcmp(stats->routes[i].path, path) == 0)
            return (long)i;
    }
    struct stats_route *routes =
        realloc(stats->routes, (stats->route_count + 1) * sizeof(*stats->routes));
    if (routes == NULL)
        return -1;
    stats->routes = routes;
    char *copy = strdup(path);
    if (copy == NULL)
        return -1;
    routes[stats->route_count] = (struct stats_route){ .path = copy };
    return (long)stats->route_count++;
}

int stats_merge(struct stats *into, const struct stats *from)
{
    into->http_requests += from->http_requests;
    for (size_t i = 0; i < STATS_REJECT_COUNT; i++)
        into->rejected[i] += from->rejected[i];
    into->messages_received += from->messages_received;
    into->bytes_received += from->bytes_received;
    into->messages_published += from->messages_published;
    into->deliveries += from->deliveries;
    into->bytes_sent += from->bytes_sent;
    into->slow_reader_drops += from->slow_reader_drops;
    into->rate_limited += from->rate_limited;
    into->memory_refusals += from->memory_refusals;
    into->subscription_bytes += from->subscription_bytes;
    int status = 0;
    for (size_t i = 0; i < from->route_count; i++) {
        long index = stats_route_index(into, from->routes[i].path);
        if (index < 0) {
            status = -1;
            continue;
        }
        into->routes[index].open += from->routes[i].open;
        into->routes[index].total += from->routes[i].total;
    }
    return status;
}

void stats_free(struct stats *stats)
{
    for (size_t i = 0; i < stats->route_count; i++)
        free(stats->routes[i].path);
    free(stats->routes);
    stats->routes = NULL;
    stats->route_count = 0;
}
