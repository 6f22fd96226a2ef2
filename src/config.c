/* config — reads wsbroker.conf (libconfig syntax) into one validated,
 * immutable struct config.
 *
 * The accepted keys, their types, ranges and defaults live in the tables
 * below; one generic walker reads any group against its table, so adding a
 * key is one table line (plus a check function when it depends on another
 * key). The same tables drive freeing. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libconfig.h>
#include <limits.h>
#include <openssl/tls1.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "pattern.h"
#include "route.h"
#include "tls.h"

/* A config file is a few kilobytes; anything far larger is a mistake
 * (wrong file) and is refused before it costs memory. */
#define CONFIG_FILE_MAX (1024 * 1024)
/* A PEM public key is a few kilobytes, a secret far less. */
#define CONFIG_KEY_FILE_MAX (64 * 1024)
#define CONFIG_AUTH_ERROR_SIZE 256
#define CONFIG_CHANNEL_PATTERN_MAX 128
#define CONFIG_KEY_PATH_MAX 160
/* getpwnam_r's buffer grows up to this for users with huge entries. */
#define CONFIG_PASSWD_BUFFER_MAX (1024 * 1024)
/* Longest Unix socket path: sun_path holds it and its NUL. */
#define CONFIG_SOCKET_PATH_MAX (sizeof(((struct sockaddr_un *)NULL)->sun_path) - 1)

#define CONFIG_ALNUM "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
#define CONFIG_TCHARS CONFIG_ALNUM "!#$%&'*+-.^_`|~"

struct config_loader {
    const char *name;            /* file name for messages */
    const char *base_directory;  /* relative paths resolve against it; NULL = cwd */
    char *error;
    size_t error_size;
};

enum config_kind {
    CONFIG_KIND_UINT,            /* unsigned, range min..max */
    CONFIG_KIND_INT,             /* int, range min..max (max <= INT_MAX) */
    CONFIG_KIND_SIZE,            /* size_t, range min..max */
    CONFIG_KIND_U64,             /* uint64_t, range min..max */
    CONFIG_KIND_MODE,            /* unsigned permission bits 0..max: an
                                    integer, or a string of octal digits */
    CONFIG_KIND_BOOL,            /* bool */
    CONFIG_KIND_STRING,          /* char *, NULL when absent */
    CONFIG_KIND_STRINGS,         /* char ** at offset, size_t count at count_offset */
    CONFIG_KIND_LOG_LEVEL,       /* enum log_level, one of choices */
    CONFIG_KIND_ROUTE_MODE,      /* enum route_mode, one of choices */
    CONFIG_KIND_PUBLISH,         /* enum publish_policy, one of choices */
    CONFIG_KIND_AUTH_ALGORITHM,  /* enum auth_algorithm, one of choices */
    CONFIG_KIND_TLS_VERSION,     /* int (TLS1_2_VERSION...), one of choices */
    CONFIG_KIND_RANGES,          /* struct netaddr_range * at offset, size_t count
                                    at count_offset, from an array of strings;
                                    default_strings when absent */
    CONFIG_KIND_INPUT,           /* a string the table's check reads from the
                                    setting itself; nothing is stored (secrets
                                    and key files, used up while loading) */
    CONFIG_KIND_GROUP,           /* embedded struct read with table */
    CONFIG_KIND_OBJECT,          /* struct read with table into memory of its
                                    own, pointer at offset; NULL when absent,
                                    so absence turns the feature off */
    CONFIG_KIND_LIST,            /* array of table->object_size items at offset,
                                    size_t count at count_offset; min = 1 when it
                                    must not be empty */
};

struct config_table;

/* Cross-key checks of one group, after its keys are read: items[index] is
 * the struct just filled, setting its group (NULL when absent), path its
 * key path for messages. Returns 0 or -1 with the error written. */
typedef int config_check_fn(struct config_loader *loader, const config_setting_t *setting,
                            void *items, size_t index, const char *path);

struct config_key {
    const char *name;
    enum config_kind kind;
    size_t offset;
    size_t count_offset;
    uint64_t min;
    uint64_t max;
    uint64_t def;
    bool required;
    const char *const *choices;
    size_t choice_count;
    const char *const *default_strings;
    size_t default_string_count;
    const struct config_table *table;
    bool optional;               /* GROUP: absent turns the feature off, so
                                    only defaults apply, neither required keys
                                    nor the check */
};

struct config_table {
    const struct config_key *keys;
    size_t key_count;
    size_t object_size;
    config_check_fn *check;
};

#define CONFIG_COUNT(array) (sizeof(array) / sizeof((array)[0]))
#define CONFIG_TABLE(keys, type, check) \
    { (keys), CONFIG_COUNT(keys), sizeof(type), (check) }

static config_check_fn config_listen_check;
static config_check_fn config_limits_check;
static config_check_fn config_tls_check;
static config_check_fn config_root_check;
static config_check_fn config_websocket_check;
static config_check_fn config_route_check;
static config_check_fn config_http_check;
static config_check_fn config_channel_check;
static config_check_fn config_auth_check;
static config_check_fn config_cluster_check;

static const char *const config_log_levels[] = {
    [LOG_LEVEL_ERROR] = "error",
    [LOG_LEVEL_WARN] = "warn",
    [LOG_LEVEL_INFO] = "info",
    [LOG_LEVEL_DEBUG] = "debug",
};

static const char *const config_route_modes[] = {
    [ROUTE_MODE_ECHO] = "echo",
    [ROUTE_MODE_BROADCAST] = "broadcast",
    [ROUTE_MODE_PUBSUB] = "pubsub",
};

static const char *const config_publish_policies[] = {
    [PUBLISH_MEMBERS] = "members",
    [PUBLISH_ANYONE] = "anyone",
    [PUBLISH_TOKEN] = "token",
    [PUBLISH_API_ONLY] = "api_only",
};

static const char *const config_auth_algorithms[] = {
    [AUTH_HS256] = "HS256",
    [AUTH_RS256] = "RS256",
    [AUTH_ES256] = "ES256",
};

static const char *const config_tls_versions[] = { "TLSv1.2", "TLSv1.3" };
/* OpenSSL's numbers for config_tls_versions, in the same order */
static const int config_tls_version_numbers[] = { TLS1_2_VERSION, TLS1_3_VERSION };

/* Scraping stays local unless the operator opens it up. */
static const char *const config_metrics_allow_default[] = { "127.0.0.0/8", "::1" };
/* A proxy on the same host is the usual deployment; anything further must
 * be named, or any client could claim any address. */
static const char *const config_proxy_trusted_default[] = { "127.0.0.1", "::1" };

static const struct config_key config_tls_keys[] = {
    { .name = "cert", .kind = CONFIG_KIND_STRING, .offset = offsetof(struct tls_config, cert_file),
      .required = true },
    { .name = "key", .kind = CONFIG_KIND_STRING, .offset = offsetof(struct tls_config, key_file),
      .required = true },
    { .name = "min_version", .kind = CONFIG_KIND_TLS_VERSION,
      .offset = offsetof(struct tls_config, min_version), .def = 0,
      .choices = config_tls_versions, .choice_count = CONFIG_COUNT(config_tls_versions) },
    { .name = "ciphers", .kind = CONFIG_KIND_STRING,
      .offset = offsetof(struct tls_config, ciphers) },
    { .name = "ciphersuites", .kind = CONFIG_KIND_STRING,
      .offset = offsetof(struct tls_config, ciphersuites) },
    { .name = "verify_client", .kind = CONFIG_KIND_BOOL,
      .offset = offsetof(struct tls_config, verify_client), .def = false },
    { .name = "ca_file", .kind = CONFIG_KIND_STRING,
      .offset = offsetof(struct tls_config, ca_file) },
};
static const struct config_table config_tls_table =
    CONFIG_TABLE(config_tls_keys, struct tls_config, config_tls_check);

/* Which of address + port or path is required depends on the other, so
 * the check enforces presence, not the table. */
static const struct config_key config_listen_keys[] = {
    { .name = "address", .kind = CONFIG_KIND_STRING,
      .offset = offsetof(struct listen_config, address) },
    { .name = "port", .kind = CONFIG_KIND_UINT, .offset = offsetof(struct listen_config, port),
      .min = 1, .max = 65535 },
    { .name = "path", .kind = CONFIG_KIND_STRING, .offset = offsetof(struct listen_config, path) },
    { .name = "mode", .kind = CONFIG_KIND_MODE, .offset = offsetof(struct listen_config, mode),
      .min = 0, .max = 0777, .def = 0660 },
    { .name = "tls", .kind = CONFIG_KIND_OBJECT, .offset = offsetof(struct listen_config, tls),
      .table = &config_tls_table },
};
static const struct config_table config_listen_table =
    CONFIG_TABLE(config_listen_keys, struct listen_config, config_listen_check);

static const struct config_key config_compression_keys[] = {
    { .name = "enabled", .kind = CONFIG_KIND_BOOL,
      .offset = offsetof(struct deflate_options, enabled), .def = true },
    { .name = "level", .kind = CONFIG_KIND_INT, .offset = offsetof(struct deflate_options, level),
      .min = 0, .max = 9, .def = 1 },
    { .name = "min_size", .kind = CONFIG_KIND_SIZE,
      .offset = offsetof(struct deflate_options, min_size), .min = 0, .max = UINT64_C(1) << 31,
      .def = 256 },
    { .name = "memory_level", .kind = CONFIG_KIND_INT,
      .offset = offsetof(struct deflate_options, memory_level), .min = 1, .max = 9, .def = 8 },
    /* zlib cannot compress with an 8-bit window (it silently uses 9), so 9
     * is the least a server may announce */
    { .name = "max_window_bits", .kind = CONFIG_KIND_INT,
      .offset = offsetof(struct deflate_options, max_window_bits), .min = 9, .max = 15,
      .def = 15 },
};
static const struct config_table config_compression_table =
    CONFIG_TABLE(config_compression_keys, struct deflate_options, NULL);

static const struct config_key config_websocket_keys[] = {
    { .name = "allowed_origins", .kind = CONFIG_KIND_STRINGS,
      .offset = offsetof(struct websocket_config, allowed_origins),
      .count_offset = offsetof(struct websocket_config, allowed_origin_count) },
    { .name = "subprotocols", .kind = CONFIG_KIND_STRINGS,
      .offset = offsetof(struct websocket_config, subprotocols),
      .count_offset = offsetof(struct websocket_config, subprotocol_count) },
    { .name = "max_message_size", .kind = CONFIG_KIND_U64,
      .offset = offsetof(struct websocket_config, max_message_size),
      .min = 1, .max = UINT64_C(1) << 31, .def = 1048576 },
    { .name = "ping_interval", .kind = CONFIG_KIND_UINT,
      .offset = offsetof(struct websocket_config, ping_interval), .min = 0, .max = 86400, .def = 25 },
    { .name = "ping_timeout", .kind = CONFIG_KIND_UINT,
      .offset = offsetof(struct websocket_config, ping_timeout), .min = 1, .max = 86400, .def = 60 },
    { .name = "handshake_timeout", .kind = CONFIG_KIND_UINT,
      .offset = offsetof(struct websocket_config, handshake_timeout), .min = 1, .max = 3600,
      .def = 10 },
    { .name = "close_timeout", .kind = CONFIG_KIND_UINT,
      .offset = offsetof(struct websocket_config, close_timeout), .min = 1, .max = 3600, .def = 5 },
    { .name = "compression", .kind = CONFIG_KIND_GROUP,
      .offset = offsetof(struct websocket_config, compression),
      .table = &config_compression_table },
};
static const struct config_table config_websocket_table =
    CONFIG_TABLE(config_websocket_keys, struct websocket_config, config_websocket_check);

static const struct config_key config_limits_keys[] = {
    { .name = "max_connections", .kind = CONFIG_KIND_UINT,
      .offset = offsetof(struct limits_config, max_connections), .min = 1, .max = 10000000,
      .def = 100000 },
    { .name = "outbound_queue_max", .kind = CONFIG_KIND_U64,
      .offset = offsetof(struct limits_config, outbound_queue_max), .min = 1024,
      .max = UINT64_C(1) << 40, .def = 4194304 },
    { .name = "request_head_max", .kind = CONFIG_KIND_UINT,
      .offset = offsetof(struct limits_config, request_head_max), .min = 1024, .max = 1048576,
      .def = 8192 },
    { .name = "max_subscriptions", .kind = CONFIG_KIND_UINT,
      .offset = offsetof(struct limits_config, max_subscriptions), .min = 1, .max = 100000,
      .def = 256 },
    { .name = "max_connections_per_ip", .kind = CONFIG_KIND_UINT,
      .offset = offsetof(struct limits_config, max_connections_per_ip), .min = 0,
      .max = 10000000, .def = 0 },
    { .name = "messages_per_second", .kind = CONFIG_KIND_UINT,
      .offset = offsetof(struct limits_config, messages_per_second), .min = 0, .max = 1000000,
      .def = 0 },
    { .name = "burst", .kind = CONFIG_KIND_UINT, .offset = offsetof(struct limits_config, burst),
      .min = 0, .max = 1000000, .def = 0 },
    { .name = "max_memory", .kind = CONFIG_KIND_U64,
      .offset = offsetof(struct limits_config, max_memory), .min = 0,
      .max = UINT64_C(1) << 50, .def = 0 },
};
static const struct config_table config_limits_table =
    CONFIG_TABLE(config_limits_keys, struct limits_config, config_limits_check);

static const struct config_key config_route_keys[] = {
    { .name = "path", .kind = CONFIG_KIND_STRING, .offset = offsetof(struct route_config, path),
      .required = true },
    { .name = "mode", .kind = CONFIG_KIND_ROUTE_MODE, .offset = offsetof(struct route_config, mode),
      .required = true, .choices = config_route_modes,
      .choice_count = CONFIG_COUNT(config_route_modes) },
    { .name = "channel", .kind = CONFIG_KIND_STRING,
      .offset = offsetof(struct route_config, channel) },
    { .name = "echo_self", .kind = CONFIG_KIND_BOOL,
      .offset = offsetof(struct route_config, echo_self), .def = true },
    { .name = "presence_events", .kind = CONFIG_KIND_BOOL,
      .offset = offsetof(struct route_config, presence_events), .def = false },
};
static const struct config_table config_route_table =
    CONFIG_TABLE(config_route_keys, struct route_config, config_route_check);

static const struct config_key config_http_keys[] = {
    { .name = "static_root", .kind = CONFIG_KIND_STRING,
      .offset = offsetof(struct http_config, static_root) },
    { .name = "api_token", .kind = CONFIG_KIND_STRING,
      .offset = offsetof(struct http_config, api_token) },
    { .name = "metrics_allow", .kind = CONFIG_KIND_RANGES,
      .offset = offsetof(struct http_config, metrics_allow),
      .count_offset = offsetof(struct http_config, metrics_allow_count),
      .default_strings = config_metrics_allow_default,
      .default_string_count = CONFIG_COUNT(config_metrics_allow_default) },
};
static const struct config_table config_http_table =
    CONFIG_TABLE(config_http_keys, struct http_config, config_http_check);

static const struct config_key config_channel_keys[] = {
    { .name = "match", .kind = CONFIG_KIND_STRING, .offset = offsetof(struct channel_rule, match),
      .required = true },
    { .name = "history", .kind = CONFIG_KIND_UINT, .offset = offsetof(struct channel_rule, history),
      .min = 0, .max = 100000, .def = 0 },
    { .name = "history_ttl", .kind = CONFIG_KIND_UINT,
      .offset = offsetof(struct channel_rule, history_ttl), .min = 0, .max = 31536000, .def = 0 },
    { .name = "presence", .kind = CONFIG_KIND_BOOL,
      .offset = offsetof(struct channel_rule, presence), .def = false },
    { .name = "publish", .kind = CONFIG_KIND_PUBLISH,
      .offset = offsetof(struct channel_rule, publish), .def = PUBLISH_MEMBERS,
      .choices = config_publish_policies, .choice_count = CONFIG_COUNT(config_publish_policies) },
};
static const struct config_table config_channel_table =
    CONFIG_TABLE(config_channel_keys, struct channel_rule, config_channel_check);

static const struct config_key config_auth_keys[] = {
    { .name = "algorithm", .kind = CONFIG_KIND_AUTH_ALGORITHM,
      .offset = offsetof(struct auth_config, algorithm), .required = true,
      .choices = config_auth_algorithms, .choice_count = CONFIG_COUNT(config_auth_algorithms) },
    { .name = "secret", .kind = CONFIG_KIND_INPUT },
    { .name = "secret_file", .kind = CONFIG_KIND_INPUT },
    { .name = "public_key_file", .kind = CONFIG_KIND_INPUT },
    { .name = "cookie", .kind = CONFIG_KIND_STRING, .offset = offsetof(struct auth_config, cookie) },
    { .name = "required", .kind = CONFIG_KIND_BOOL,
      .offset = offsetof(struct auth_config, required), .def = true },
};
static const struct config_table config_auth_table =
    CONFIG_TABLE(config_auth_keys, struct auth_config, config_auth_check);

static const struct config_key config_proxy_keys[] = {
    { .name = "trusted", .kind = CONFIG_KIND_RANGES,
      .offset = offsetof(struct proxy_config, trusted),
      .count_offset = offsetof(struct proxy_config, trusted_count),
      .default_strings = config_proxy_trusted_default,
      .default_string_count = CONFIG_COUNT(config_proxy_trusted_default) },
};
static const struct config_table config_proxy_table =
    CONFIG_TABLE(config_proxy_keys, struct proxy_config, NULL);

static const struct config_key config_cluster_keys[] = {
    { .name = "engine", .kind = CONFIG_KIND_STRING,
      .offset = offsetof(struct cluster_config, engine), .required = true },
    { .name = "url", .kind = CONFIG_KIND_STRING, .offset = offsetof(struct cluster_config, url),
      .required = true },
    { .name = "prefix", .kind = CONFIG_KIND_STRING,
      .offset = offsetof(struct cluster_config, prefix) },
};
static const struct config_table config_cluster_table =
    CONFIG_TABLE(config_cluster_keys, struct cluster_config, config_cluster_check);

static const struct config_key config_root_keys[] = {
    { .name = "listen", .kind = CONFIG_KIND_LIST, .offset = offsetof(struct config, listeners),
      .count_offset = offsetof(struct config, listener_count), .min = 1, .required = true,
      .table = &config_listen_table },
    { .name = "websocket", .kind = CONFIG_KIND_GROUP, .offset = offsetof(struct config, websocket),
      .table = &config_websocket_table },
    { .name = "limits", .kind = CONFIG_KIND_GROUP, .offset = offsetof(struct config, limits),
      .table = &config_limits_table },
    { .name = "routes", .kind = CONFIG_KIND_LIST, .offset = offsetof(struct config, routes),
      .count_offset = offsetof(struct config, route_count), .table = &config_route_table },
    { .name = "http", .kind = CONFIG_KIND_GROUP, .offset = offsetof(struct config, http),
      .table = &config_http_table },
    { .name = "channels", .kind = CONFIG_KIND_LIST, .offset = offsetof(struct config, channel_rules),
      .count_offset = offsetof(struct config, channel_rule_count), .table = &config_channel_table },
    { .name = "auth", .kind = CONFIG_KIND_GROUP, .offset = offsetof(struct config, auth),
      .table = &config_auth_table, .optional = true },
    { .name = "proxy", .kind = CONFIG_KIND_GROUP, .offset = offsetof(struct config, proxy),
      .table = &config_proxy_table },
    { .name = "user", .kind = CONFIG_KIND_STRING, .offset = offsetof(struct config, user) },
    { .name = "log_level", .kind = CONFIG_KIND_LOG_LEVEL, .offset = offsetof(struct config, log_level),
      .def = LOG_LEVEL_INFO, .choices = config_log_levels,
      .choice_count = CONFIG_COUNT(config_log_levels) },
    { .name = "shutdown_timeout", .kind = CONFIG_KIND_UINT,
      .offset = offsetof(struct config, shutdown_timeout), .min = 1, .max = 3600, .def = 5 },
    { .name = "workers", .kind = CONFIG_KIND_UINT, .offset = offsetof(struct config, workers),
      .min = 0, .max = CONFIG_MAX_WORKERS, .def = 0 },
    { .name = "cluster", .kind = CONFIG_KIND_GROUP, .offset = offsetof(struct config, cluster),
      .table = &config_cluster_table, .optional = true },
};
static const struct config_table config_root_table =
    CONFIG_TABLE(config_root_keys, struct config, config_root_check);

/* ---- messages ---- */

__attribute__((format(printf, 3, 0)))
static int config_vfail(struct config_loader *loader, unsigned line, const char *format,
                        va_list args)
{
    if (loader->error == NULL || loader->error_size == 0)
        return -1;
    int n = line > 0 ? snprintf(loader->error, loader->error_size, "%s:%u: ", loader->name, line)
                     : snprintf(loader->error, loader->error_size, "%s: ", loader->name);
    if (n >= 0 && (size_t)n < loader->error_size)
        vsnprintf(loader->error + n, loader->error_size - (size_t)n, format, args);
    return -1;
}

__attribute__((format(printf, 3, 4)))
static int config_fail_at(struct config_loader *loader, unsigned line, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    config_vfail(loader, line, format, args);
    va_end(args);
    return -1;
}

/* Blames setting's own line; line 0 (the root, or NULL) gives "FILE: ...". */
__attribute__((format(printf, 3, 4)))
static int config_fail(struct config_loader *loader, const config_setting_t *setting,
                       const char *format, ...)
{
    va_list args;
    va_start(args, format);
    config_vfail(loader, setting != NULL ? config_setting_source_line(setting) : 0, format, args);
    va_end(args);
    return -1;
}

static int config_fail_memory(struct config_loader *loader)
{
    return config_fail_at(loader, 0, "out of memory");
}

/* Key paths only label messages: a cut one still points the right way, so
 * truncation is accepted. */
static void config_key_path(char *out, const char *parent, const char *name)
{
    int n = parent[0] == '\0' ? snprintf(out, CONFIG_KEY_PATH_MAX, "%s", name)
                              : snprintf(out, CONFIG_KEY_PATH_MAX, "%s.%s", parent, name);
    if (n < 0)
        out[0] = '\0';
}

static void config_item_path(char *out, const char *list, size_t index)
{
    if (snprintf(out, CONFIG_KEY_PATH_MAX, "%s[%zu]", list, index) < 0)
        out[0] = '\0';
}

/* ---- small helpers ---- */

static void *config_field(void *object, size_t offset)
{
    return (char *)object + offset;
}

/* List fields hold typed pointers (struct route_config *); memcpy moves them
 * without reading one pointer type through another. */
static void *config_get_pointer(const void *field)
{
    void *pointer;
    memcpy(&pointer, field, sizeof(pointer));
    return pointer;
}

static void config_set_pointer(void *field, void *pointer)
{
    memcpy(field, &pointer, sizeof(pointer));
}

static const config_setting_t *config_member(const config_setting_t *group, const char *name)
{
    return group != NULL ? config_setting_get_member(group, name) : NULL;
}

static char *config_join(const char *directory, const char *name)
{
    size_t directory_length = strlen(directory);
    size_t name_length = strlen(name);
    bool slash = directory_length == 0 || directory[directory_length - 1] != '/';
    char *joined = malloc(directory_length + slash + name_length + 1);

    if (joined == NULL)
        return NULL;
    memcpy(joined, directory, directory_length);
    if (slash)
        joined[directory_length] = '/';
    memcpy(joined + directory_length + slash, name, name_length + 1);
    return joined;
}

/* ---- integers libconfig 1.5 would wrap ---- */

static bool config_is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int config_digit_value(char c, bool hex)
{
    if (config_is_digit(c))
        return c - '0';
    if (hex && c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (hex && c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static const char *config_skip_float(const char *p)
{
    while (config_is_digit(*p) || *p == '.')
        p++;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        while (config_is_digit(*p))
            p++;
    }
    return p;
}

/* Scans the number at p and returns its end; *widen says it is an integer
 * literal beyond int range that has no L suffix. */
static const char *config_scan_number(const char *p, bool *widen)
{
    bool hex = p[0] == '0' && (p[1] == 'x' || p[1] == 'X');
    unsigned base = hex ? 16 : 10;
    unsigned long long value = 0;
    int digit;

    p += hex ? 2 : 0;
    for (; (digit = config_digit_value(*p, hex)) >= 0; p++) {
        if (value <= INT_MAX)   /* past INT_MAX only "too big" matters */
            value = value * base + (unsigned)digit;
    }
    if (!hex && (*p == '.' || *p == 'e' || *p == 'E'))
        return config_skip_float(p);
    *widen = *p != 'L' && value > INT_MAX;
    return p;
}

static const char *config_skip_string(const char *p)
{
    for (p++; *p != '\0' && *p != '"'; p++) {
        if (*p == '\\' && p[1] != '\0')
            p++;
    }
    return *p == '"' ? p + 1 : p;
}

static const char *config_skip_token(const char *p, bool *widen)
{
    if (*p == '"')
        return config_skip_string(p);
    if (*p == '#' || (p[0] == '/' && p[1] == '/'))
        return p + strcspn(p, "\n");
    if (p[0] == '/' && p[1] == '*') {
        const char *end = strstr(p + 2, "*/");
        return end != NULL ? end + 2 : p + strlen(p);
    }
    if (*p == '*' || strchr(CONFIG_ALNUM, *p) != NULL) {
        if (config_is_digit(*p))
            return config_scan_number(p, widen);
        return p + strspn(p, CONFIG_ALNUM "_-*");   /* a name: its digits are no number */
    }
    if (*p == '.' && config_is_digit(p[1]))
        return config_skip_float(p);
    return p + 1;
}

static unsigned config_line_at(const char *text, const char *at)
{
    unsigned line = 1;
    for (const char *p = text; p < at; p++)
        line += *p == '\n';
    return line;
}

/* Enough of libconfig's grammar to know where a string may stand: the last
 * token and the innermost open bracket. */
struct config_prepass {
    char previous;              /* first byte of the last token; 0 at the start */
    char open[64];              /* open brackets, innermost last */
    size_t depth;               /* may exceed the array: deeper levels unknown */
};

static void config_prepass_step(struct config_prepass *state, const char *token)
{
    char c = token[0];
    if (strchr(" \t\r\n\f\v#", c) != NULL || (c == '/' && (token[1] == '/' || token[1] == '*')))
        return;
    if (strchr("{([", c) != NULL) {
        if (state->depth < sizeof(state->open))
            state->open[state->depth] = c;
        state->depth++;
    } else if (strchr("})]", c) != NULL && state->depth > 0) {
        state->depth--;
    }
    state->previous = c;
}

/* An integer literal with a leading zero ("0660", not "0", "0x1f" or
 * "0.5"). libconfig 1.5 has no octal literals and reads it as decimal 660,
 * so a permission mode written the C way would silently mean other bits. */
static bool config_leading_zero(const char *p)
{
    if (p[0] != '0' || !config_is_digit(p[1]))
        return false;
    p += strspn(p, "0123456789");
    return *p != '.' && *p != 'e' && *p != 'E';
}

/* What the pre-pass refuses itself, or NULL. Directives: an @include'd file
 * would bypass the pass. A string where no value may stand ("log_level
 * "info";", "a = "x", "y";" in a group): libconfig 1.5 leaks the string's
 * buffer on that syntax error, so it is reported here first, in libconfig's
 * own words. A leading zero: see config_leading_zero. */
static const char *config_prepass_problem(const struct config_prepass *state, const char *p)
{
    if (*p == '@')
        return "directives such as @include are not supported";
    if (config_leading_zero(p))
        return "an integer with a leading zero is not octal here (0660 would read as 660): "
               "write a mode as a string, \"0660\"";
    if (*p != '"' || state->previous == '\0')
        return *p == '"' ? "syntax error" : NULL;
    if (strchr("=:([\"", state->previous) != NULL)
        return NULL;
    bool in_list = state->depth > sizeof(state->open) ||
                   (state->depth > 0 && state->open[state->depth - 1] != '{');
    return state->previous == ',' && in_list ? NULL : "syntax error";
}

/* libconfig 1.5 keeps an integer literal without the L suffix in an int and
 * silently wraps anything larger: 2147483648 reads as -2147483648 and
 * 1099511627776 as 0. Appending the suffix to such literals before parsing
 * makes them 64-bit, so every value means what it says. Only characters
 * inside lines are inserted, so libconfig's line numbers stay right. */
static char *config_prepass_text(struct config_loader *loader, const char *text)
{
    size_t length = strlen(text);
    /* a widened literal has at least ten characters of its own */
    char *out = malloc(length + length / 8 + 2);
    size_t n = 0;
    struct config_prepass state = { .previous = '\0' };

    if (out == NULL) {
        config_fail_memory(loader);
        return NULL;
    }
    for (const char *p = text; *p != '\0';) {
        const char *problem = config_prepass_problem(&state, p);
        if (problem != NULL) {
            config_fail_at(loader, config_line_at(text, p), "%s", problem);
            free(out);
            return NULL;
        }
        bool widen = false;
        const char *end = config_skip_token(p, &widen);
        config_prepass_step(&state, p);
        memcpy(out + n, p, (size_t)(end - p));
        n += (size_t)(end - p);
        if (widen)
            out[n++] = 'L';
        p = end;
    }
    out[n] = '\0';
    return out;
}

/* ---- reading values ---- */

static int config_read_group(struct config_loader *loader, const config_setting_t *group,
                             const struct config_table *table, void *items, size_t index,
                             const char *path);

static int config_read_integer(struct config_loader *loader, const config_setting_t *setting,
                               const struct config_key *key, const char *path, uint64_t *value)
{
    int type = config_setting_type(setting);
    if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64)
        return config_fail(loader, setting, "'%s' must be an integer", path);
    long long number = config_setting_get_int64(setting);
    if (number < 0 || (unsigned long long)number < key->min ||
        (unsigned long long)number > key->max)
        return config_fail(loader, setting, "'%s' must be between %" PRIu64 " and %" PRIu64,
                           path, key->min, key->max);
    *value = (uint64_t)number;
    return 0;
}

static bool config_octal_parse(const char *text, uint64_t *value)
{
    size_t length = text != NULL ? strspn(text, "01234567") : 0;
    if (length == 0 || length > 4 || text[length] != '\0')
        return false;
    *value = strtoull(text, NULL, 8);
    return true;
}

/* Permission bits. libconfig 1.5 has no octal literals (and the pre-pass
 * refuses "0660" written as a number), so the octal spelling is a string,
 * "0660"; a plain integer is the bits' decimal value, 432. */
static bool config_mode_value(const config_setting_t *setting, uint64_t *value)
{
    int type = config_setting_type(setting);

    if (type == CONFIG_TYPE_INT || type == CONFIG_TYPE_INT64) {
        long long number = config_setting_get_int64(setting);
        *value = (uint64_t)number;
        return number >= 0;
    }
    return type == CONFIG_TYPE_STRING &&
           config_octal_parse(config_setting_get_string(setting), value);
}

static int config_read_mode(struct config_loader *loader, const config_setting_t *setting,
                            const struct config_key *key, const char *path, unsigned *mode)
{
    uint64_t value = 0;

    if (!config_mode_value(setting, &value) || value < key->min || value > key->max)
        return config_fail(loader, setting,
                           "'%s' must be a string of octal digits (\"0660\") or an integer "
                           "%" PRIu64 " to %" PRIu64, path, key->min, key->max);
    *mode = (unsigned)value;
    return 0;
}

static int config_read_choice(struct config_loader *loader, const config_setting_t *setting,
                              const struct config_key *key, const char *path, size_t *choice)
{
    const char *value = config_setting_get_string(setting);
    for (size_t i = 0; value != NULL && i < key->choice_count; i++) {
        if (strcmp(value, key->choices[i]) == 0) {
            *choice = i;
            return 0;
        }
    }
    char names[128] = "";
    for (size_t i = 0; i < key->choice_count; i++) {
        size_t used = strlen(names);
        snprintf(names + used, sizeof(names) - used, "%s%s", i > 0 ? ", " : "", key->choices[i]);
    }
    return config_fail(loader, setting, "'%s' must be one of %s", path, names);
}

static int config_read_text_value(struct config_loader *loader, const config_setting_t *setting,
                                  const char *path, char **out)
{
    const char *value = config_setting_get_string(setting);
    if (config_setting_type(setting) != CONFIG_TYPE_STRING || value == NULL)
        return config_fail(loader, setting, "'%s' must be a string", path);
    *out = strdup(value);
    return *out != NULL ? 0 : config_fail_memory(loader);
}

static int config_read_strings(struct config_loader *loader, const config_setting_t *setting,
                               const struct config_key *key, void *object, const char *path)
{
    int type = config_setting_type(setting);
    if (type != CONFIG_TYPE_ARRAY && type != CONFIG_TYPE_LIST)
        return config_fail(loader, setting, "'%s' must be an array of strings", path);
    size_t count = (size_t)config_setting_length(setting);
    if (count == 0)
        return 0;
    char **strings = calloc(count, sizeof(*strings));
    if (strings == NULL)
        return config_fail_memory(loader);
    char ***field = config_field(object, key->offset);
    size_t *stored = config_field(object, key->count_offset);
    *field = strings;
    /* counted as they are filled, so a failure half way frees cleanly */
    for (size_t i = 0; i < count; i++) {
        const config_setting_t *element = config_setting_get_elem(setting, (unsigned)i);
        if (config_setting_type(element) != CONFIG_TYPE_STRING)
            return config_fail(loader, element, "'%s' must be an array of strings", path);
        if (config_read_text_value(loader, element, path, &strings[i]) != 0)
            return -1;
        *stored = i + 1;
    }
    return 0;
}

/* Addresses and CIDR ranges; an explicit empty array allows nobody. */
static int config_read_ranges(struct config_loader *loader, const config_setting_t *setting,
                              const struct config_key *key, void *object, const char *path)
{
    int type = config_setting_type(setting);
    if (type != CONFIG_TYPE_ARRAY && type != CONFIG_TYPE_LIST)
        return config_fail(loader, setting, "'%s' must be an array of strings", path);
    size_t count = (size_t)config_setting_length(setting);
    if (count == 0)
        return 0;
    struct netaddr_range *ranges = calloc(count, sizeof(*ranges));
    if (ranges == NULL)
        return config_fail_memory(loader);
    config_set_pointer(config_field(object, key->offset), ranges);
    *(size_t *)config_field(object, key->count_offset) = count;
    for (size_t i = 0; i < count; i++) {
        const config_setting_t *element = config_setting_get_elem(setting, (unsigned)i);
        const char *value = config_setting_get_string(element);
        if (config_setting_type(element) != CONFIG_TYPE_STRING || value == NULL)
            return config_fail(loader, element, "'%s' must be an array of strings", path);
        if (netaddr_range_parse(value, &ranges[i]) != 0)
            return config_fail(loader, element, "'%s[%zu]' is not an address or CIDR range",
                               path, i);
    }
    return 0;
}

/* An absent ranges key takes the table's default entries, parsed by the
 * same code as the file's so both mean exactly the same. */
static int config_default_ranges(struct config_loader *loader, const struct config_key *key,
                                 void *object, const char *path)
{
    size_t count = key->default_string_count;
    if (count == 0)
        return 0;
    struct netaddr_range *ranges = calloc(count, sizeof(*ranges));
    if (ranges == NULL)
        return config_fail_memory(loader);
    config_set_pointer(config_field(object, key->offset), ranges);
    *(size_t *)config_field(object, key->count_offset) = count;
    for (size_t i = 0; i < count; i++) {
        if (netaddr_range_parse(key->default_strings[i], &ranges[i]) != 0)
            return config_fail_at(loader, 0, "built-in default of '%s' (\"%s\") does not parse",
                                  path, key->default_strings[i]);
    }
    return 0;
}

static int config_read_list(struct config_loader *loader, const config_setting_t *setting,
                            const struct config_key *key, void *object, const char *path)
{
    if (config_setting_type(setting) != CONFIG_TYPE_LIST)
        return config_fail(loader, setting, "'%s' must be a list of groups", path);
    size_t count = (size_t)config_setting_length(setting);
    if (count < key->min)
        return config_fail(loader, setting, "'%s' must not be empty", path);
    if (count == 0)
        return 0;
    void *items = calloc(count, key->table->object_size);
    if (items == NULL)
        return config_fail_memory(loader);
    config_set_pointer(config_field(object, key->offset), items);
    *(size_t *)config_field(object, key->count_offset) = count;
    for (size_t i = 0; i < count; i++) {
        const config_setting_t *element = config_setting_get_elem(setting, (unsigned)i);
        char item_path[CONFIG_KEY_PATH_MAX];
        config_item_path(item_path, path, i);
        if (config_setting_type(element) != CONFIG_TYPE_GROUP)
            return config_fail(loader, element, "'%s' must be a list of groups", path);
        if (config_read_group(loader, element, key->table, items, i, item_path) != 0)
            return -1;
    }
    return 0;
}

/* A group behind a pointer: memory of its own, set before it is filled
 * so that a failure half way still frees it. */
static int config_read_object(struct config_loader *loader, const config_setting_t *setting,
                              const struct config_key *key, void *field, const char *path)
{
    if (config_setting_type(setting) != CONFIG_TYPE_GROUP)
        return config_fail(loader, setting, "'%s' must be a group", path);
    void *object = calloc(1, key->table->object_size);
    if (object == NULL)
        return config_fail_memory(loader);
    config_set_pointer(field, object);
    return config_read_group(loader, setting, key->table, object, 0, path);
}

static bool config_kind_is_choice(enum config_kind kind)
{
    return kind == CONFIG_KIND_LOG_LEVEL || kind == CONFIG_KIND_ROUTE_MODE ||
           kind == CONFIG_KIND_PUBLISH || kind == CONFIG_KIND_AUTH_ALGORITHM ||
           kind == CONFIG_KIND_TLS_VERSION;
}

/* Each enum is written through its own type: their sizes are the
 * compiler's choice, so no int pointer stands in for them. */
static void config_set_choice(const struct config_key *key, void *field, size_t choice)
{
    switch (key->kind) {
    case CONFIG_KIND_LOG_LEVEL:
        *(enum log_level *)field = (enum log_level)choice;
        break;
    case CONFIG_KIND_ROUTE_MODE:
        *(enum route_mode *)field = (enum route_mode)choice;
        break;
    case CONFIG_KIND_PUBLISH:
        *(enum publish_policy *)field = (enum publish_policy)choice;
        break;
    case CONFIG_KIND_AUTH_ALGORITHM:
        *(enum auth_algorithm *)field = (enum auth_algorithm)choice;
        break;
    case CONFIG_KIND_TLS_VERSION:
        *(int *)field = config_tls_version_numbers[choice];
        break;
    default:
        break;
    }
}

static int config_read_value(struct config_loader *loader, const config_setting_t *setting,
                             const struct config_key *key, void *object, const char *path)
{
    void *field = config_field(object, key->offset);
    uint64_t number;
    size_t choice = 0;

    switch (key->kind) {
    case CONFIG_KIND_UINT:
        if (config_read_integer(loader, setting, key, path, &number) != 0)
            return -1;
        *(unsigned *)field = (unsigned)number;
        return 0;
    case CONFIG_KIND_INT:
        if (config_read_integer(loader, setting, key, path, &number) != 0)
            return -1;
        *(int *)field = (int)number;
        return 0;
    case CONFIG_KIND_SIZE:
        if (config_read_integer(loader, setting, key, path, &number) != 0)
            return -1;
        *(size_t *)field = (size_t)number;
        return 0;
    case CONFIG_KIND_U64:
        return config_read_integer(loader, setting, key, path, (uint64_t *)field);
    case CONFIG_KIND_MODE:
        return config_read_mode(loader, setting, key, path, (unsigned *)field);
    case CONFIG_KIND_BOOL:
        if (config_setting_type(setting) != CONFIG_TYPE_BOOL)
            return config_fail(loader, setting, "'%s' must be true or false", path);
        *(bool *)field = config_setting_get_bool(setting) != 0;
        return 0;
    case CONFIG_KIND_STRING:
        return config_read_text_value(loader, setting, path, (char **)field);
    case CONFIG_KIND_STRINGS:
        return config_read_strings(loader, setting, key, object, path);
    case CONFIG_KIND_LOG_LEVEL:
    case CONFIG_KIND_ROUTE_MODE:
    case CONFIG_KIND_PUBLISH:
    case CONFIG_KIND_AUTH_ALGORITHM:
    case CONFIG_KIND_TLS_VERSION:
        if (config_read_choice(loader, setting, key, path, &choice) != 0)
            return -1;
        config_set_choice(key, field, choice);
        return 0;
    case CONFIG_KIND_RANGES:
        return config_read_ranges(loader, setting, key, object, path);
    case CONFIG_KIND_INPUT:
        if (config_setting_type(setting) != CONFIG_TYPE_STRING)
            return config_fail(loader, setting, "'%s' must be a string", path);
        return 0;
    case CONFIG_KIND_GROUP:
        if (config_setting_type(setting) != CONFIG_TYPE_GROUP)
            return config_fail(loader, setting, "'%s' must be a group", path);
        return config_read_group(loader, setting, key->table, field, 0, path);
    case CONFIG_KIND_OBJECT:
        return config_read_object(loader, setting, key, field, path);
    case CONFIG_KIND_LIST:
        return config_read_list(loader, setting, key, object, path);
    }
    return config_fail(loader, setting, "'%s' has an unknown kind", path);
}

static void config_apply_defaults(const struct config_table *table, void *object)
{
    for (size_t i = 0; i < table->key_count; i++) {
        const struct config_key *key = &table->keys[i];
        void *field = config_field(object, key->offset);
        if (key->kind == CONFIG_KIND_UINT || key->kind == CONFIG_KIND_MODE)
            *(unsigned *)field = (unsigned)key->def;
        else if (key->kind == CONFIG_KIND_INT)
            *(int *)field = (int)key->def;
        else if (key->kind == CONFIG_KIND_SIZE)
            *(size_t *)field = (size_t)key->def;
        else if (key->kind == CONFIG_KIND_U64)
            *(uint64_t *)field = key->def;
        else if (key->kind == CONFIG_KIND_BOOL)
            *(bool *)field = key->def != 0;
        else if (config_kind_is_choice(key->kind))
            config_set_choice(key, field, (size_t)key->def);
    }
}

static const struct config_key *config_find_key(const struct config_table *table, const char *name)
{
    for (size_t i = 0; i < table->key_count; i++) {
        if (strcmp(table->keys[i].name, name) == 0)
            return &table->keys[i];
    }
    return NULL;
}

/* Fills items[index] from group (NULL: the group is absent, defaults
 * only), then runs the table's cross-key check. */
static int config_read_group(struct config_loader *loader, const config_setting_t *group,
                             const struct config_table *table, void *items, size_t index,
                             const char *path)
{
    void *object = (char *)items + index * table->object_size;
    char key_path[CONFIG_KEY_PATH_MAX];

    config_apply_defaults(table, object);
    for (int i = 0; group != NULL && i < config_setting_length(group); i++) {
        const config_setting_t *member = config_setting_get_elem(group, (unsigned)i);
        const char *name = config_setting_name(member);
        const struct config_key *key = config_find_key(table, name);
        config_key_path(key_path, path, name);
        if (key == NULL)
            return config_fail(loader, member, "unknown key '%s'", key_path);
        if (config_read_value(loader, member, key, object, key_path) != 0)
            return -1;
    }
    for (size_t i = 0; i < table->key_count; i++) {
        const struct config_key *key = &table->keys[i];
        if (config_member(group, key->name) != NULL)
            continue;
        config_key_path(key_path, path, key->name);
        if (key->required)
            return config_fail(loader, group, "'%s' is required", key_path);
        if (key->kind == CONFIG_KIND_GROUP && key->optional)
            config_apply_defaults(key->table, config_field(object, key->offset));
        else if (key->kind == CONFIG_KIND_GROUP &&
                 config_read_group(loader, NULL, key->table, config_field(object, key->offset), 0,
                                   key_path) != 0)
            return -1;
        if (key->kind == CONFIG_KIND_RANGES &&
            config_default_ranges(loader, key, object, key_path) != 0)
            return -1;
    }
    return table->check != NULL ? table->check(loader, group, items, index, path) : 0;
}

/* ---- files ---- */

static int config_errno(void)
{
    return errno != 0 ? errno : EIO;
}

/* Reads the whole file, at most limit bytes (EFBIG beyond), NUL-terminated;
 * returns 0 or an errno value. */
static int config_file_text(const char *path, size_t limit, char **text, size_t *length)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return config_errno();
    size_t capacity = 4096;
    size_t used = 0;
    char *buffer = malloc(capacity);
    int error = buffer == NULL ? ENOMEM : 0;
    while (error == 0) {
        if (used == capacity - 1) {
            if (used > limit) {
                error = EFBIG;
                break;
            }
            size_t next = capacity * 2 < limit + 2 ? capacity * 2 : limit + 2;
            char *bigger = realloc(buffer, next);
            if (bigger == NULL) {
                error = ENOMEM;
                break;
            }
            buffer = bigger;
            capacity = next;
        }
        ssize_t got = read(fd, buffer + used, capacity - 1 - used);
        if (got == 0)
            break;
        if (got < 0 && errno != EINTR)
            error = config_errno();
        used += got > 0 ? (size_t)got : 0;
    }
    (void)close(fd);   /* read-only: a failing close loses nothing */
    if (error != 0) {
        free(buffer);
        return error;
    }
    buffer[used] = '\0';
    *text = buffer;
    *length = used;
    return 0;
}

/* ---- cross-key checks ---- */

static bool config_port_valid(const char *port)
{
    size_t digits = strspn(port, "0123456789");
    if (digits == 0 || digits > 5 || port[digits] != '\0')
        return false;
    long value = strtol(port, NULL, 10);
    return value >= 1 && value <= 65535;
}

/* "*", "null", or scheme://host[:port] with an optional "*." before a host
 * name. Anything else (a path, a trailing slash) can never equal a browser's
 * Origin header, so it is refused rather than left to never match. */
static bool config_origin_valid(const char *origin)
{
    if (strcmp(origin, "*") == 0 || strcmp(origin, "null") == 0)
        return true;
    size_t scheme = strspn(origin, CONFIG_ALNUM "+-.");
    if (scheme == 0 || config_is_digit(origin[0]) || strchr("+-.", origin[0]) != NULL ||
        strncmp(origin + scheme, "://", 3) != 0)
        return false;
    const char *host = origin + scheme + 3;
    bool wildcard = strncmp(host, "*.", 2) == 0;
    host += wildcard ? 2 : 0;
    size_t host_length;
    if (host[0] == '[' && !wildcard) {
        host_length = strspn(host + 1, "0123456789abcdefABCDEF:.");
        if (host_length == 0 || host[host_length + 1] != ']')
            return false;
        host_length += 2;
    } else {
        host_length = strspn(host, CONFIG_ALNUM "-.");
        if (host_length == 0)
            return false;
    }
    const char *rest = host + host_length;
    return rest[0] == '\0' || (rest[0] == ':' && config_port_valid(rest + 1));
}

static bool config_token_valid(const char *token)
{
    return token[0] != '\0' && token[strspn(token, CONFIG_TCHARS)] == '\0';
}

static const config_setting_t *config_element(const config_setting_t *group, const char *name,
                                              size_t index)
{
    const config_setting_t *array = config_member(group, name);
    return array != NULL ? config_setting_get_elem(array, (unsigned)index) : NULL;
}

/* The smallest max_memory that leaves room for the broker itself. */
#define CONFIG_MAX_MEMORY_MIN (UINT64_C(1) << 20)

static int config_limits_check(struct config_loader *loader, const config_setting_t *setting,
                               void *items, size_t index, const char *path)
{
    struct limits_config *limits = &((struct limits_config *)items)[index];
    if (limits->max_memory != 0 && limits->max_memory < CONFIG_MAX_MEMORY_MIN)
        return config_fail(loader, config_member(setting, "max_memory"),
                           "'%s.max_memory' must be 0 (no limit) or at least %llu bytes", path,
                           (unsigned long long)CONFIG_MAX_MEMORY_MIN);
    if (limits->burst > 0 && limits->messages_per_second == 0)
        return config_fail(loader, config_member(setting, "burst"),
                           "'%s.burst' needs '%s.messages_per_second'", path, path);
    /* One second's worth unless said otherwise. */
    if (limits->burst == 0)
        limits->burst = limits->messages_per_second;
    return 0;
}

static int config_websocket_check(struct config_loader *loader, const config_setting_t *setting,
                                  void *items, size_t index, const char *path)
{
    const struct websocket_config *websocket = &((const struct websocket_config *)items)[index];

    for (size_t i = 0; i < websocket->allowed_origin_count; i++) {
        if (!config_origin_valid(websocket->allowed_origins[i]))
            return config_fail(loader, config_element(setting, "allowed_origins", i),
                               "'%s.allowed_origins': \"%s\" is not \"*\", \"null\" or "
                               "scheme://host[:port]", path, websocket->allowed_origins[i]);
    }
    for (size_t i = 0; i < websocket->subprotocol_count; i++) {
        if (!config_token_valid(websocket->subprotocols[i]))
            return config_fail(loader, config_element(setting, "subprotocols", i),
                               "'%s.subprotocols': \"%s\" is not an HTTP token", path,
                               websocket->subprotocols[i]);
    }
    if (websocket->ping_interval > 0 && websocket->ping_timeout <= websocket->ping_interval) {
        const config_setting_t *blamed = config_member(setting, "ping_timeout");
        return config_fail(loader, blamed != NULL ? blamed : config_member(setting, "ping_interval"),
                           "'%s.ping_timeout' (%u) must be greater than '%s.ping_interval' (%u)",
                           path, websocket->ping_timeout, path, websocket->ping_interval);
    }
    return 0;
}

/* Relative to the config file's directory, made absolute so it survives a
 * later chdir of the daemon. */
static char *config_resolve(const char *base_directory, const char *name)
{
    if (base_directory != NULL && base_directory[0] == '/')
        return config_join(base_directory, name);
    char *cwd = getcwd(NULL, 0);
    if (cwd == NULL)
        return NULL;
    char *joined;
    if (base_directory == NULL || base_directory[0] == '\0' || strcmp(base_directory, ".") == 0) {
        joined = config_join(cwd, name);
    } else {
        char *directory = config_join(cwd, base_directory);
        joined = directory != NULL ? config_join(directory, name) : NULL;
        free(directory);
    }
    free(cwd);
    return joined;
}

/* ---- listeners ---- */

/* Replaces *value, a file name relative to the config file's directory,
 * with its absolute form. */
static int config_absolute_path(struct config_loader *loader, const config_setting_t *setting,
                                char **value, const char *key_path)
{
    if ((*value)[0] == '/')
        return 0;
    char *absolute = config_resolve(loader->base_directory, *value);
    if (absolute == NULL)
        return config_fail(loader, setting, "cannot resolve '%s': %s", key_path,
                           strerror(config_errno()));
    free(*value);
    *value = absolute;
    return 0;
}

static int config_listen_unix(struct config_loader *loader, const config_setting_t *setting,
                              struct listen_config *listener, const char *path)
{
    static const char *const tcp_keys[] = { "address", "port" };
    const config_setting_t *path_setting = config_member(setting, "path");
    char key_path[CONFIG_KEY_PATH_MAX];

    for (size_t i = 0; i < CONFIG_COUNT(tcp_keys); i++) {
        const config_setting_t *stray = config_member(setting, tcp_keys[i]);
        if (stray != NULL)
            return config_fail(loader, stray, "'%s.%s' and '%s.path' exclude each other", path,
                               tcp_keys[i], path);
    }
    /* TLS on a socket only local processes reach would protect nothing */
    const config_setting_t *tls = config_member(setting, "tls");
    if (tls != NULL)
        return config_fail(loader, tls, "'%s.tls' applies only to TCP listeners (address and port)",
                           path);
    if (listener->path[0] == '\0')
        return config_fail(loader, path_setting, "'%s.path' must not be empty", path);
    config_key_path(key_path, path, "path");
    if (config_absolute_path(loader, path_setting, &listener->path, key_path) != 0)
        return -1;
    if (strlen(listener->path) > CONFIG_SOCKET_PATH_MAX)
        return config_fail(loader, path_setting,
                           "'%s.path' (%s) is longer than the %zu bytes of a Unix socket path",
                           path, listener->path, CONFIG_SOCKET_PATH_MAX);
    return 0;
}

static int config_address_parse(const char *address, int *family, unsigned char bytes[16])
{
    if (inet_pton(AF_INET, address, bytes) == 1) {
        *family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, address, bytes) == 1) {
        *family = AF_INET6;
        return 0;
    }
    return -1;
}

static int config_listen_tcp(struct config_loader *loader, const config_setting_t *setting,
                             const struct listen_config *listener, const char *path)
{
    const config_setting_t *mode = config_member(setting, "mode");
    bool has_address = config_member(setting, "address") != NULL;
    bool has_port = config_member(setting, "port") != NULL;
    unsigned char bytes[16];
    int family;

    if (mode != NULL)
        return config_fail(loader, mode, "'%s.mode' applies only to Unix socket listeners (path)",
                           path);
    if (!has_address && !has_port)
        return config_fail(loader, setting, "'%s' needs 'address' and 'port', or 'path'", path);
    if (!has_address || !has_port)
        return config_fail(loader, setting, "'%s.%s' is required", path,
                           has_address ? "port" : "address");
    if (config_address_parse(listener->address, &family, bytes) != 0)
        return config_fail(loader, config_member(setting, "address"),
                           "'%s.address' must be a numeric IPv4 or IPv6 address", path);
    return 0;
}

/* Both TCP, same address (however spelt) and port; or the same socket path. */
static bool config_listen_same(const struct listen_config *a, const struct listen_config *b)
{
    if (a->path != NULL || b->path != NULL)
        return a->path != NULL && b->path != NULL && strcmp(a->path, b->path) == 0;
    unsigned char a_bytes[16] = { 0 }, b_bytes[16] = { 0 };
    int a_family, b_family;
    return config_address_parse(a->address, &a_family, a_bytes) == 0 &&
           config_address_parse(b->address, &b_family, b_bytes) == 0 && a_family == b_family &&
           memcmp(a_bytes, b_bytes, sizeof(a_bytes)) == 0 && a->port == b->port;
}

static int config_listen_check(struct config_loader *loader, const config_setting_t *setting,
                               void *items, size_t index, const char *path)
{
    struct listen_config *listeners = items;
    struct listen_config *listener = &listeners[index];
    int result = listener->path != NULL ? config_listen_unix(loader, setting, listener, path)
                                        : config_listen_tcp(loader, setting, listener, path);

    if (result != 0)
        return -1;
    for (size_t i = 0; i < index; i++) {
        if (!config_listen_same(&listeners[i], listener))
            continue;
        if (listener->path != NULL)
            return config_fail(loader, setting, "'%s' repeats listen[%zu] (%s)", path, i,
                               listener->path);
        return config_fail(loader, setting, "'%s' repeats listen[%zu] (%s port %u)", path, i,
                           listener->address, listener->port);
    }
    return 0;
}

/* ---- tls ---- */

/* Files a tls group names, checked in this order. */
static const struct {
    const char *name;
    size_t offset;
} config_tls_files[] = {
    { "cert", offsetof(struct tls_config, cert_file) },
    { "key", offsetof(struct tls_config, key_file) },
    { "ca_file", offsetof(struct tls_config, ca_file) },
};

/* NULL when file opens for reading and is a regular file, else why not. A
 * FIFO must not block the load, hence O_NONBLOCK. */
static const char *config_unreadable(const char *file)
{
    int fd = open(file, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return strerror(config_errno());
    struct stat status;
    const char *problem = NULL;
    if (fstat(fd, &status) != 0)
        problem = strerror(config_errno());
    else if (S_ISDIR(status.st_mode))
        problem = strerror(EISDIR);
    else if (!S_ISREG(status.st_mode))
        problem = "not a regular file";
    (void)close(fd);   /* read-only: a failing close loses nothing */
    return problem;
}

/* Made absolute and readable now: the daemon may chdir later, and a typo
 * should stop `wsbroker -t`, not the first handshake. */
static int config_tls_file(struct config_loader *loader, const config_setting_t *setting,
                           struct tls_config *tls, size_t file, const char *path)
{
    char **value = config_field(tls, config_tls_files[file].offset);
    const config_setting_t *member = config_member(setting, config_tls_files[file].name);
    char key_path[CONFIG_KEY_PATH_MAX];

    if (*value == NULL)
        return 0;
    config_key_path(key_path, path, config_tls_files[file].name);
    if ((*value)[0] == '\0')
        return config_fail(loader, member, "'%s': no file name", key_path);
    if (config_absolute_path(loader, member, value, key_path) != 0)
        return -1;
    const char *problem = config_unreadable(*value);
    if (problem != NULL)
        return config_fail(loader, member, "'%s': cannot read %s: %s", key_path, *value, problem);
    return 0;
}

/* ca_file goes with verify_client = true and only with it, so a CA file
 * the operator wrote is never silently unused. */
static int config_tls_client(struct config_loader *loader, const config_setting_t *setting,
                             const struct tls_config *tls, const char *path)
{
    if (tls->verify_client && tls->ca_file == NULL)
        return config_fail(loader, config_member(setting, "verify_client"),
                           "'%s.ca_file' is required when '%s.verify_client' is true", path, path);
    if (!tls->verify_client && tls->ca_file != NULL)
        return config_fail(loader, config_member(setting, "ca_file"),
                           "'%s.ca_file' applies only when '%s.verify_client' is true", path, path);
    return 0;
}

/* Checked one by one so that the error names the key's line; building the
 * context would find them too, but only at the group's. */
static int config_tls_ciphers(struct config_loader *loader, const config_setting_t *setting,
                              const struct tls_config *tls, const char *path)
{
    char message[TLS_ERROR_SIZE] = "";

    if (tls->ciphers != NULL && tls_check_ciphers(tls->ciphers, message, sizeof(message)) != 0)
        return config_fail(loader, config_member(setting, "ciphers"), "'%s.ciphers': %s", path,
                           message);
    if (tls->ciphersuites == NULL)
        return 0;
    const config_setting_t *member = config_member(setting, "ciphersuites");
    if (tls_check_ciphersuites(tls->ciphersuites, message, sizeof(message)) != 0)
        return config_fail(loader, member, "'%s.ciphersuites': %s", path, message);
    if (tls->ciphersuites[0] == '\0' && tls->min_version == TLS1_3_VERSION)
        return config_fail(loader, member,
                           "'%s.ciphersuites' is empty, which leaves TLS 1.3, the only version "
                           "'%s.min_version' allows, without ciphers", path, path);
    return 0;
}

static int config_tls_check(struct config_loader *loader, const config_setting_t *setting,
                            void *items, size_t index, const char *path)
{
    struct tls_config *tls = &((struct tls_config *)items)[index];
    char message[TLS_ERROR_SIZE] = "";

    if (config_tls_client(loader, setting, tls, path) != 0)
        return -1;
    for (size_t i = 0; i < CONFIG_COUNT(config_tls_files); i++) {
        if (config_tls_file(loader, setting, tls, i, path) != 0)
            return -1;
    }
    if (config_tls_ciphers(loader, setting, tls, path) != 0)
        return -1;
    /* a context built and thrown away: whether the certificate and key
     * load and match is only known by trying */
    struct tls_context *context = tls_context_new(tls, message, sizeof(message));
    if (context == NULL)
        return config_fail(loader, setting, "'%s': %s", path,
                           message[0] != '\0' ? message : "unusable");
    tls_context_release(context);
    return 0;
}

/* ---- top level ---- */

/* The user must exist now: finding out only when the daemon drops its
 * privileges, after binding, would be too late for `wsbroker -t`. */
static int config_user_check(struct config_loader *loader, const config_setting_t *setting,
                             const char *name)
{
    struct passwd entry;
    struct passwd *found = NULL;
    char *buffer = NULL;
    int error = ERANGE;

    for (size_t size = 4096; error == ERANGE && size <= CONFIG_PASSWD_BUFFER_MAX; size *= 4) {
        char *bigger = realloc(buffer, size);
        if (bigger == NULL) {
            free(buffer);
            return config_fail_memory(loader);
        }
        buffer = bigger;
        error = getpwnam_r(name, &entry, buffer, size, &found);
    }
    free(buffer);
    /* some NSS modules report "no such user" as one of these errors */
    bool missing = error == ENOENT || error == ESRCH || error == EBADF || error == EPERM;
    if (error != 0 && !missing)
        return config_fail(loader, setting, "'user': cannot look up \"%s\": %s", name,
                           strerror(error));
    if (found == NULL)
        return config_fail(loader, setting, "'user': no user named \"%s\"", name);
    return 0;
}

static int config_root_check(struct config_loader *loader, const config_setting_t *setting,
                             void *items, size_t index, const char *path)
{
    const struct config *config = items;

    if (config->user != NULL)
        return config_user_check(loader, config_member(setting, "user"), config->user);
    return 0;
}

static int config_http_static_root(struct config_loader *loader, const config_setting_t *setting,
                                   struct http_config *http, const char *path)
{
    char *root = http->static_root;

    if (root == NULL || root[0] == '/')
        return 0;
    http->static_root = root[0] != '\0' ? config_resolve(loader->base_directory, root) : NULL;
    int resolve_error = errno;
    bool failed = root[0] != '\0' && http->static_root == NULL;
    free(root);
    if (failed)
        return config_fail(loader, config_member(setting, "static_root"),
                           "cannot resolve '%s.static_root': %s", path, strerror(resolve_error));
    return 0;
}

/* A client sends the token in an Authorization header: a byte that cannot
 * stand there (space, control, non-ASCII) would make /api/ unusable. */
static bool config_api_token_valid(const char *token)
{
    for (const unsigned char *p = (const unsigned char *)token; *p != '\0'; p++) {
        if (*p <= ' ' || *p >= 0x7f)
            return false;
    }
    return true;
}

static int config_http_check(struct config_loader *loader, const config_setting_t *setting,
                             void *items, size_t index, const char *path)
{
    struct http_config *http = &((struct http_config *)items)[index];

    if (config_http_static_root(loader, setting, http, path) != 0)
        return -1;
    if (http->api_token != NULL && http->api_token[0] == '\0') {
        free(http->api_token);   /* "" reads as unset: the API stays off */
        http->api_token = NULL;
    }
    if (http->api_token != NULL && !config_api_token_valid(http->api_token))
        return config_fail(loader, config_member(setting, "api_token"),
                           "'%s.api_token' must be printable ASCII without spaces", path);
    return 0;
}

/* ---- channels ---- */

static bool config_channel_pattern_valid(const char *pattern)
{
    size_t length = strlen(pattern);
    return length >= 1 && length <= CONFIG_CHANNEL_PATTERN_MAX &&
           strspn(pattern, CONFIG_ALNUM "_.:@/-*") == length;
}

static int config_channel_check(struct config_loader *loader, const config_setting_t *setting,
                                void *items, size_t index, const char *path)
{
    struct channel_rule *rule = &((struct channel_rule *)items)[index];

    rule->line = config_setting_source_line(setting);
    if (!config_channel_pattern_valid(rule->match))
        return config_fail(loader, config_member(setting, "match"),
                           "'%s.match' must be 1 to 128 characters of A-Z a-z 0-9 _ . : @ / - *",
                           path);
    return 0;
}

const struct channel_rule *config_channel_rule(const struct config *config, const char *name)
{
    /* What a channel gets when no rule names it: nothing kept, nothing
     * announced, only members publish. */
    static const struct channel_rule fallback = {
        .match = "*",
        .history = 0,
        .history_ttl = 0,
        .presence = false,
        .publish = PUBLISH_MEMBERS,
    };

    for (size_t i = 0; config != NULL && name != NULL && i < config->channel_rule_count; i++) {
        if (pattern_match(config->channel_rules[i].match, name))
            return &config->channel_rules[i];
    }
    return &fallback;
}

/* "{a}:{b}" for a path with parameters a and b; else the path itself
 * without its leading slash ("root" for "/"). */
static char *config_route_default_channel(const char *path)
{
    if (strcmp(path, "/") == 0)
        return strdup("root");
    if (strstr(path, "/:") == NULL)
        return strdup(path + 1);
    char *channel = malloc(2 * strlen(path) + 1);   /* "/:x" (3) becomes ":{x}" (4) */
    if (channel == NULL)
        return NULL;
    size_t n = 0;
    for (const char *p = strstr(path, "/:"); p != NULL; p = strstr(p, "/:")) {
        size_t length = strcspn(p + 2, "/");
        if (n > 0)
            channel[n++] = ':';
        channel[n++] = '{';
        memcpy(channel + n, p + 2, length);
        n += length;
        channel[n++] = '}';
        p += 2 + length;
    }
    channel[n] = '\0';
    return channel;
}

/* A route is unreachable when an earlier one matches every path it matches.
 * Its pattern with each parameter replaced by "%" (a byte no literal segment
 * may hold) is a path that only parameters match, so the matcher itself
 * answers the question. Returns 1 and *earlier when shadowed, 0 if not, -1
 * when out of memory. */
static int config_route_shadowed(struct route_config *routes, size_t index, size_t *earlier)
{
    const char *pattern = routes[index].path;
    char *probe = malloc(strlen(pattern) + 1);
    if (probe == NULL)
        return -1;
    size_t n = 0;
    for (const char *p = pattern; *p != '\0';) {
        if (p[0] == '/' && p[1] == ':') {
            probe[n++] = '/';
            probe[n++] = '%';
            p += 1 + strcspn(p + 1, "/");
        } else {
            probe[n++] = *p++;
        }
    }
    struct config probe_config = { .routes = routes, .route_count = index };
    const struct route_config *hit = NULL;
    char channel[CHANNEL_NAME_MAX + 1];
    enum route_match_result result =
        route_match(&probe_config, probe, n, &hit, channel, sizeof(channel));
    free(probe);
    if (result == ROUTE_NOT_FOUND || hit == NULL)
        return 0;
    *earlier = (size_t)(hit - routes);
    return 1;
}

static int config_route_channel(struct config_loader *loader, const config_setting_t *setting,
                                struct route_config *route, const char *path)
{
    const char *problem;

    if (route->channel != NULL) {
        problem = route_pattern_check(route->path, route->channel);
        return problem == NULL ? 0
                               : config_fail(loader, config_member(setting, "channel"),
                                             "'%s.channel' is invalid: %s", path, problem);
    }
    route->channel = config_route_default_channel(route->path);
    if (route->channel == NULL)
        return config_fail_memory(loader);
    problem = route_pattern_check(route->path, route->channel);
    if (problem != NULL)
        return config_fail(loader, config_member(setting, "path"),
                           "'%s.path' gives no valid default channel (%s); set '%s.channel'",
                           path, problem, path);
    return 0;
}

#define CONFIG_MODE_BIT(mode) (1u << (mode))

/* Route keys only some modes use. Setting one on another mode is an error,
 * not a value silently ignored: pubsub names its channels per message, and
 * only broadcast connections need join/leave turned into frames. */
static const struct {
    const char *name;
    unsigned modes;       /* CONFIG_MODE_BIT of each mode that takes it */
    const char *where;
} config_route_mode_keys[] = {
    { "channel", CONFIG_MODE_BIT(ROUTE_MODE_BROADCAST), "broadcast routes" },
    { "echo_self", CONFIG_MODE_BIT(ROUTE_MODE_BROADCAST) | CONFIG_MODE_BIT(ROUTE_MODE_PUBSUB),
      "broadcast and pubsub routes" },
    { "presence_events", CONFIG_MODE_BIT(ROUTE_MODE_BROADCAST), "broadcast routes" },
};

static int config_route_mode_keys_check(struct config_loader *loader,
                                        const config_setting_t *setting,
                                        const struct route_config *route, const char *path)
{
    for (size_t i = 0; i < CONFIG_COUNT(config_route_mode_keys); i++) {
        const config_setting_t *member = config_member(setting, config_route_mode_keys[i].name);
        if (member != NULL && (config_route_mode_keys[i].modes & CONFIG_MODE_BIT(route->mode)) == 0)
            return config_fail(loader, member, "'%s.%s' applies only to %s", path,
                               config_route_mode_keys[i].name, config_route_mode_keys[i].where);
    }
    return 0;
}

static int config_route_check(struct config_loader *loader, const config_setting_t *setting,
                              void *items, size_t index, const char *path)
{
    struct route_config *routes = items;
    struct route_config *route = &routes[index];
    const char *problem = route_pattern_check(route->path, NULL);

    route->line = config_setting_source_line(setting);
    if (problem != NULL)
        return config_fail(loader, config_member(setting, "path"), "'%s.path' is invalid: %s",
                           path, problem);
    if (config_route_mode_keys_check(loader, setting, route, path) != 0)
        return -1;
    if (route->mode == ROUTE_MODE_BROADCAST &&
        config_route_channel(loader, setting, route, path) != 0)
        return -1;
    size_t earlier;
    int shadowed = config_route_shadowed(routes, index, &earlier);
    if (shadowed < 0)
        return config_fail_memory(loader);
    if (shadowed == 0)
        return 0;
    const config_setting_t *path_setting = config_member(setting, "path");
    if (strcmp(routes[earlier].path, route->path) == 0)
        return config_fail(loader, path_setting, "'%s.path' duplicates routes[%zu] (line %u)",
                           path, earlier, routes[earlier].line);
    return config_fail(loader, path_setting,
                       "'%s.path' is never reached: routes[%zu] '%s' (line %u) comes first and "
                       "matches every path it does", path, earlier, routes[earlier].path,
                       routes[earlier].line);
}

/* ---- auth ---- */

static int config_auth_cookie(struct config_loader *loader, const config_setting_t *setting,
                              struct auth_config *auth, const char *path)
{
    if (auth->cookie != NULL && auth->cookie[0] == '\0') {
        free(auth->cookie);   /* "" reads as unset: no cookie carries a token */
        auth->cookie = NULL;
    }
    /* RFC 6265: a cookie name is an HTTP token; another never arrives */
    if (auth->cookie != NULL && !config_token_valid(auth->cookie))
        return config_fail(loader, config_member(setting, "cookie"),
                           "'%s.cookie': \"%s\" is not a cookie name (an HTTP token)", path,
                           auth->cookie);
    return 0;
}

/* Picks the one key setting the algorithm takes: secret or secret_file for
 * HS256, public_key_file for RS256 and ES256. Anything else set is an error,
 * so a key the operator wrote is never silently ignored. */
static int config_auth_source(struct config_loader *loader, const config_setting_t *setting,
                              enum auth_algorithm algorithm, const char *path,
                              const config_setting_t **source)
{
    const config_setting_t *secret = config_member(setting, "secret");
    const config_setting_t *secret_file = config_member(setting, "secret_file");
    const config_setting_t *public_key_file = config_member(setting, "public_key_file");
    const char *name = config_auth_algorithms[algorithm];

    if (algorithm == AUTH_HS256) {
        if (public_key_file != NULL)
            return config_fail(loader, public_key_file,
                               "'%s.public_key_file' applies only to RS256 and ES256", path);
        if (secret != NULL && secret_file != NULL)
            return config_fail(loader, secret_file,
                               "'%s.secret' and '%s.secret_file' exclude each other", path, path);
        if (secret == NULL && secret_file == NULL)
            return config_fail(loader, setting, "'%s.secret' or '%s.secret_file' is required for %s",
                               path, path, name);
        *source = secret != NULL ? secret : secret_file;
        return 0;
    }
    const config_setting_t *stray = secret != NULL ? secret : secret_file;
    if (stray != NULL)
        return config_fail(loader, stray, "'%s.%s' applies only to HS256", path,
                           config_setting_name(stray));
    if (public_key_file == NULL)
        return config_fail(loader, setting, "'%s.public_key_file' is required for %s", path, name);
    *source = public_key_file;
    return 0;
}

/* Reads a key file named relative to the config file's directory. Returns
 * 0, or -1 with "KEY: problem" written. */
static int config_auth_read_file(struct config_loader *loader, const config_setting_t *source,
                                 const char *key_path, char **text, size_t *length)
{
    const char *name = config_setting_get_string(source);

    if (name == NULL || name[0] == '\0')
        return config_fail(loader, source, "%s: no file name", key_path);
    char *file = name[0] == '/' ? strdup(name) : config_resolve(loader->base_directory, name);
    if (file == NULL)
        return config_fail(loader, source, "%s: cannot resolve \"%s\": %s", key_path, name,
                           strerror(config_errno()));
    int error = config_file_text(file, CONFIG_KEY_FILE_MAX, text, length);
    if (error == EFBIG)
        config_fail(loader, source, "%s: %s is larger than %d bytes", key_path, file,
                    CONFIG_KEY_FILE_MAX);
    else if (error != 0)
        config_fail(loader, source, "%s: cannot read %s: %s", key_path, file, strerror(error));
    free(file);
    return error == 0 ? 0 : -1;
}

/* A secret file written by `echo` or an editor ends in a newline that is
 * not part of the secret. */
static size_t config_strip_newline(const char *text, size_t length)
{
    if (length > 0 && text[length - 1] == '\n')
        length--;
    if (length > 0 && text[length - 1] == '\r')
        length--;
    return length;
}

static int config_auth_verifier(struct config_loader *loader, const config_setting_t *source,
                                struct auth_config *auth, const char *path)
{
    const char *name = config_setting_name(source);
    char key_path[CONFIG_KEY_PATH_MAX];
    char message[CONFIG_AUTH_ERROR_SIZE] = "";

    config_key_path(key_path, path, name);
    if (strcmp(name, "secret") == 0) {
        const char *secret = config_setting_get_string(source);
        if (secret == NULL)
            return config_fail(loader, source, "'%s' must be a string", key_path);
        auth->verifier = auth_new(auth->algorithm, secret, strlen(secret), message,
                                  sizeof(message));
    } else {
        char *text;
        size_t length;
        if (config_auth_read_file(loader, source, key_path, &text, &length) != 0)
            return -1;
        if (strcmp(name, "secret_file") == 0)
            length = config_strip_newline(text, length);
        auth->verifier = auth_new(auth->algorithm, text, length, message, sizeof(message));
        explicit_bzero(text, length);   /* no copy of key material outlives loading */
        free(text);
    }
    if (auth->verifier == NULL)
        return config_fail(loader, source, "%s: %s", key_path,
                           message[0] != '\0' ? message : "unusable key");
    return 0;
}

/* Runs only when the auth group is present: its presence turns auth on. */
static int config_auth_check(struct config_loader *loader, const config_setting_t *setting,
                             void *items, size_t index, const char *path)
{
    struct auth_config *auth = &((struct auth_config *)items)[index];
    const config_setting_t *source = NULL;

    if (config_auth_cookie(loader, setting, auth, path) != 0 ||
        config_auth_source(loader, setting, auth->algorithm, path, &source) != 0)
        return -1;
    return config_auth_verifier(loader, source, auth, path);
}

/* ---- cluster ---- */

/* Runs only when the cluster group is present: its presence turns
 * cluster mode on. */
static int config_cluster_check(struct config_loader *loader, const config_setting_t *setting,
                                void *items, size_t index, const char *path)
{
#ifndef HAVE_REDIS
    return config_fail(loader, setting,
                       "%s: this wsbroker was built without Redis support (./configure --with-redis)",
                       path);
#else
    struct cluster_config *cluster = &((struct cluster_config *)items)[index];
    if (strcmp(cluster->engine, "redis") != 0)
        return config_fail(loader, config_member(setting, "engine"),
                           "'%s.engine' must be \"redis\", not \"%s\"", path, cluster->engine);
    const char *problem = NULL;
    if (cluster_url_parse(cluster->url, &cluster->redis, &problem) != 0)
        return config_fail(loader, config_member(setting, "url"), "'%s.url': %s", path, problem);
    if (cluster->prefix == NULL && (cluster->prefix = strdup("wsbroker:")) == NULL)
        return config_fail_memory(loader);
    if (!cluster_prefix_valid(cluster->prefix))
        return config_fail(loader, config_member(setting, "prefix"),
                           "'%s.prefix' must be 1 to 64 printable ASCII characters without spaces",
                           path);
    cluster->enabled = true;
    return 0;
#endif
}

/* ---- lifetime ---- */

static void config_free_table(const struct config_table *table, void *object)
{
    for (size_t i = 0; i < table->key_count; i++) {
        const struct config_key *key = &table->keys[i];
        void *field = config_field(object, key->offset);
        if (key->kind == CONFIG_KIND_STRING) {
            free(*(char **)field);
        } else if (key->kind == CONFIG_KIND_STRINGS) {
            char **strings = *(char ***)field;
            size_t count = *(size_t *)config_field(object, key->count_offset);
            for (size_t j = 0; j < count; j++)
                free(strings[j]);
            free(strings);
        } else if (key->kind == CONFIG_KIND_RANGES) {
            free(config_get_pointer(field));
        } else if (key->kind == CONFIG_KIND_GROUP) {
            config_free_table(key->table, field);
        } else if (key->kind == CONFIG_KIND_OBJECT) {
            void *inner = config_get_pointer(field);
            if (inner != NULL)
                config_free_table(key->table, inner);
            free(inner);
        } else if (key->kind == CONFIG_KIND_LIST) {
            char *list = config_get_pointer(field);
            size_t count = *(size_t *)config_field(object, key->count_offset);
            for (size_t j = 0; j < count; j++)
                config_free_table(key->table, list + j * key->table->object_size);
            free(list);
        }
    }
}

static void config_free(struct config *config)
{
    auth_free(config->auth.verifier);   /* built by a check, not a table key */
    cluster_url_clear(&config->cluster.redis);
    config_free_table(&config_root_table, config);
    free(config->file);
    free(config);
}

struct config *config_retain(struct config *config)
{
    /* atomic so worker threads may share one config */
    if (config != NULL)
        __atomic_add_fetch(&config->refcount, 1, __ATOMIC_RELAXED);
    return config;
}

void config_release(struct config *config)
{
    if (config != NULL && __atomic_sub_fetch(&config->refcount, 1, __ATOMIC_ACQ_REL) == 0)
        config_free(config);
}

/* ---- entry points ---- */

static int config_build(struct config_loader *loader, const char *text, struct config *config)
{
    config_t parsed;
    int result;

    config_init(&parsed);
    if (config_read_string(&parsed, text) != CONFIG_TRUE) {
        result = config_fail_at(loader, (unsigned)config_error_line(&parsed), "%s",
                                config_error_text(&parsed) != NULL ? config_error_text(&parsed)
                                                                   : "cannot parse");
    } else {
        result = config_read_group(loader, config_root_setting(&parsed), &config_root_table,
                                   config, 0, "");
    }
    config_destroy(&parsed);
    return result;
}

struct config *config_parse(const char *text, const char *name, const char *base_directory,
                            char *error, size_t error_size)
{
    struct config_loader loader = {
        .name = name != NULL ? name : "(config)",
        .base_directory = base_directory,
        .error = error,
        .error_size = error_size,
    };

    if (error != NULL && error_size > 0)
        error[0] = '\0';
    if (text == NULL) {
        config_fail_at(&loader, 0, "no configuration text");
        return NULL;
    }
    char *widened = config_prepass_text(&loader, text);
    if (widened == NULL)
        return NULL;
    struct config *config = calloc(1, sizeof(*config));
    if (config == NULL || (config->file = strdup(loader.name)) == NULL) {
        config_fail_memory(&loader);
        free(config);
        free(widened);
        return NULL;
    }
    config->refcount = 1;
    int result = config_build(&loader, widened, config);
    free(widened);
    if (result != 0) {
        config_free(config);
        return NULL;
    }
    return config;
}

static char *config_directory_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

struct config *config_load(const char *path, char *error, size_t error_size)
{
    char *text = NULL;
    size_t length = 0;
    int read_error = config_file_text(path, CONFIG_FILE_MAX, &text, &length);

    if (read_error != 0) {
        if (error != NULL && error_size > 0)
            snprintf(error, error_size, "%s: cannot read: %s", path, strerror(read_error));
        return NULL;
    }
    /* libconfig reads up to the first NUL and would ignore the rest */
    if (strlen(text) != length) {
        if (error != NULL && error_size > 0)
            snprintf(error, error_size, "%s: contains a NUL byte", path);
        free(text);
        return NULL;
    }
    char *directory = config_directory_of(path);
    struct config *config = NULL;
    if (directory == NULL) {
        if (error != NULL && error_size > 0)
            snprintf(error, error_size, "%s: out of memory", path);
    } else {
        config = config_parse(text, path, directory, error, error_size);
    }
    free(directory);
    free(text);
    return config;
}
