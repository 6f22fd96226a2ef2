/* route — maps a request path to a configured route and expands the
 * route's channel template. Pure code. */
#ifndef WSBROKER_ROUTE_H
#define WSBROKER_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

#define CHANNEL_NAME_MAX 128

enum route_match_result {
    ROUTE_MATCHED = 0,
    ROUTE_NOT_FOUND = -1,      /* no route: 404 (or a static file) */
    ROUTE_BAD_CHANNEL = -2,    /* matched, but the expanded channel name is
                                  not valid: 400 */
};

/* Matches path (no query string, not yet percent-decoded) against the
 * routes in order; the first match wins. A ":name" segment matches one
 * non-empty segment; parameters are percent-decoded before expansion. On
 * ROUTE_MATCHED, *route is set and, for broadcast routes, channel holds the
 * NUL-terminated expanded channel name (channel_size >= CHANNEL_NAME_MAX + 1);
 * for echo and pubsub routes it is "". */
enum route_match_result route_match(const struct config *config, const char *path,
                                    size_t path_length, const struct route_config **route,
                                    char *channel, size_t channel_size);

/* True when name is a valid channel name: 1-128 bytes of [A-Za-z0-9_.:@/-]. */
bool route_channel_name_valid(const char *name, size_t length);

/* Checks a route path pattern and channel template at config time
 * (channel_template NULL: the path only, as for echo and pubsub routes,
 * which have no template). Returns NULL when valid, else a static message. */
const char *route_pattern_check(const char *path, const char *channel_template);

#endif
