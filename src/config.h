/* config — reads wsbroker.conf (libconfig syntax) into one validated,
 * immutable struct config. A reload builds a new one; connections keep a
 * reference to the one they started with. */
#ifndef WSBROKER_CONFIG_H
#define WSBROKER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "cluster_codec.h"
#include "deflate.h"
#include "log.h"
#include "netaddr.h"

#define CONFIG_ERROR_SIZE 512

struct tls_config {
    char *cert_file;          /* PEM certificate chain (absolute path) */
    char *key_file;           /* PEM private key (absolute path) */
    int min_version;          /* TLS1_2_VERSION (default) or TLS1_3_VERSION */
    char *ciphers;            /* TLS 1.2 cipher list, NULL = OpenSSL's default */
    char *ciphersuites;       /* TLS 1.3 suites, NULL = OpenSSL's default */
    bool verify_client;       /* require a client certificate, default false */
    char *ca_file;            /* CAs for client certificates (absolute), or NULL */
};

/* A TCP listener (address + port) or a Unix socket listener (path). */
struct listen_config {
    char *address;            /* numeric IPv4 or IPv6 address, NULL for a Unix socket */
    unsigned port;            /* 1..65535 */
    char *path;               /* Unix socket path (absolute), or NULL */
    unsigned mode;            /* Unix socket permissions, default 0660 */
    struct tls_config *tls;   /* NULL: plain */
};

enum route_mode {
    ROUTE_MODE_ECHO,
    ROUTE_MODE_BROADCAST,
    ROUTE_MODE_PUBSUB,
};

struct route_config {
    char *path;               /* "/chat/:room": literal segments and :params */
    enum route_mode mode;
    char *channel;            /* broadcast: channel template, "{room}" expands
                                 a path parameter; default is the path's
                                 parameters joined, or the path itself */
    bool echo_self;           /* broadcast, pubsub: sender receives its own message */
    bool presence_events;     /* broadcast: join/leave reach this route's
                                 connections as JSON text frames */
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
    struct deflate_options compression;   /* permessage-deflate */
};

struct proxy_config {
    /* peers whose X-Forwarded-For / X-Real-IP / X-Forwarded-Proto are
     * believed; default 127.0.0.1 and ::1 */
    struct netaddr_range *trusted;
    size_t trusted_count;
};

struct limits_config {
    unsigned max_connections;    /* default 100000 */
    uint64_t outbound_queue_max; /* bytes, default 4194304 */
    unsigned request_head_max;   /* bytes, default 8192 */
    unsigned max_subscriptions;  /* per pubsub connection, default 256 */
    unsigned max_connections_per_ip;  /* per client address (IPv6: per /64), 0 = no limit */
    unsigned messages_per_second;     /* per connection, 0 = no limit */
    unsigned burst;                   /* messages at once; messages_per_second when not set */
    uint64_t max_memory;              /* heap bytes in use before refusing work, 0 = no limit */
};

enum publish_policy {
    PUBLISH_MEMBERS,             /* publisher must be subscribed (default) */
    PUBLISH_ANYONE,
    PUBLISH_TOKEN,               /* a verified token allowing the channel */
    PUBLISH_API_ONLY,            /* only POST /api/publish */
};

/* Behaviour of the channels whose names match: first matching rule wins. */
struct channel_rule {
    char *match;                 /* pattern, '*' any run of characters */
    unsigned history;            /* messages held, default 0 */
    unsigned history_ttl;        /* seconds, 0 = no age limit (default) */
    bool presence;               /* default false */
    enum publish_policy publish; /* default PUBLISH_MEMBERS */
    unsigned line;
};

struct auth_config {
    struct auth *verifier;       /* NULL: auth is off (no `auth` group) */
    enum auth_algorithm algorithm;
    char *cookie;                /* cookie carrying the token, NULL for none */
    bool required;               /* default true */
};

struct http_config {
    char *static_root;           /* absolute path (relative values are resolved
                                    against the config file's directory), or
                                    NULL to serve no files */
    char *api_token;             /* NULL (or unset/empty): /api/ answers 404 */
    struct netaddr_range *metrics_allow;   /* default 127.0.0.0/8 and ::1 */
    size_t metrics_allow_count;
};

/* cluster group: several brokers sharing channels through Redis. */
struct cluster_config {
    bool enabled;                /* the group is present */
    char *engine;                /* "redis" */
    char *url;                   /* redis://[[user]:password@]host[:port][/db] */
    char *prefix;                /* of every Redis key and channel, default "wsbroker:" */
    struct cluster_url redis;    /* url, parsed */
};

/* The most worker threads workers may ask for. */
#define CONFIG_MAX_WORKERS 256

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
    struct channel_rule *channel_rules;
    size_t channel_rule_count;
    struct auth_config auth;
    struct proxy_config proxy;
    char *user;                  /* drop privileges to this user when started
                                    as root; NULL = stay */
    enum log_level log_level;
    unsigned shutdown_timeout;   /* seconds SIGTERM waits for close handshakes, default 5 */
    unsigned workers;            /* worker threads; 0 (default): one per online CPU */
    struct cluster_config cluster;
};

/* Reads and validates path. On error returns NULL and writes
 * "FILE:LINE: message" (or "FILE: message") into error. The result has
 * refcount 1. */
struct config *config_load(const char *path, char *error, size_t error_size);

/* Same, from text in memory; name stands for the file name in messages and
 * relative paths resolve against base_directory. */
struct config *config_parse(const char *text, const char *name, const char *base_directory,
                            char *error, size_t error_size);

/* The rule for the channel named name: the first that matches, else a
 * built-in default (no history, no presence, publish = members). Never NULL. */
const struct channel_rule *config_channel_rule(const struct config *config, const char *name);

struct config *config_retain(struct config *config);
void config_release(struct config *config);   /* frees at refcount 0; NULL ok */

#endif
