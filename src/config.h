/* config — reads wsbroker.conf (libconfig syntax) into one validated,
 * immutable struct config. A reload builds a new one; connections keep a
 * reference to the one they started with. */
#ifndef WSBROKER_CONFIG_H
#define WSBROKER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"

#define CONFIG_ERROR_SIZE 512

struct listen_config {
    char *address;            /* numeric IPv4 or IPv6 address */
    unsigned port;            /* 1..65535 */
};

enum route_mode {
    ROUTE_MODE_ECHO,
    ROUTE_MODE_BROADCAST,
};

struct route_config {
    char *path;               /* "/chat/:room": literal segments and :params */
    enum route_mode mode;
    char *channel;            /* broadcast: channel template, "{room}" expands
                                 a path parameter; default is the path's
                                 parameters joined, or the path itself */
    bool echo_self;           /* broadcast: sender receives its own message */
    unsigned line;            /* line in the config file, for messages */
};

struct websocket_config {
    char **allowed_origins;
    size_t allowed_origin_count;
    char **subprotocols;
    size_t subprotocol_count;
    uint64_t max_message_size;   /* bytes, default 1048576 */
    unsigned ping_interval;      /* seconds, 0 = off, default 25 */
    unsigned ping_timeout;       /* seconds, default 60, > ping_interval */
    unsigned handshake_timeout;  /* seconds, default 10 */
    unsigned close_timeout;      /* seconds to wait for the peer's close, default 5 */
};

struct limits_config {
    unsigned max_connections;    /* default 100000 */
    uint64_t outbound_queue_max; /* bytes, default 4194304 */
    unsigned request_head_max;   /* bytes, default 8192 */
};

struct http_config {
    char *static_root;           /* absolute path (relative values are resolved
                                    against the config file's directory), or
                                    NULL to serve no files */
};

struct config {
    unsigned refcount;
    char *file;                  /* the file it was read from */
    struct listen_config *listeners;
    size_t listener_count;
    struct websocket_config websocket;
    struct limits_config limits;
    struct route_config *routes;
    size_t route_count;
    struct http_config http;
    enum log_level log_level;
    unsigned shutdown_timeout;   /* seconds SIGTERM waits for close handshakes, default 5 */
};

/* Reads and validates path. On error returns NULL and writes
 * "FILE:LINE: message" (or "FILE: message") into error. The result has
 * refcount 1. */
struct config *config_load(const char *path, char *error, size_t error_size);

/* Same, from text in memory; name stands for the file name in messages and
 * relative paths resolve against base_directory. */
struct config *config_parse(const char *text, const char *name, const char *base_directory,
                            char *error, size_t error_size);

struct config *config_retain(struct config *config);
void config_release(struct config *config);   /* frees at refcount 0; NULL ok */

#endif
