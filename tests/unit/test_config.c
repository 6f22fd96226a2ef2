/* Unit tests for the config module (and the log module it names levels
 * from): defaults, every key's type and range errors with their exact
 * "FILE:LINE: message", unknown keys at every level, cross-key rules,
 * routes, channel rules, the HTTP API and metrics keys, JWT auth keys and
 * their key files, TCP, TLS and Unix socket listeners (with certificates
 * generated at test time), compression, proxy and user keys, path
 * resolution, file reading and the shipped sample config. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/tls1.h>
#include <openssl/x509.h>
#include <pwd.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "netaddr.h"

/* One listener on line 1, so keys in the tests below start on line 2. */
#define LISTEN "listen = ( { address = \"127.0.0.1\"; port = 8080; } );\n"

static struct config *parse(const char *text, char *error)
{
    return config_parse(text, "t.conf", "/etc/wsbroker", error, CONFIG_ERROR_SIZE);
}

static struct config *parse_ok(const char *text)
{
    char error[CONFIG_ERROR_SIZE];
    struct config *config = parse(text, error);
    if (config == NULL)
        fail_msg("rejected: %s\n%s", error, text);
    return config;
}

static void expect_error(const char *text, const char *expected)
{
    char error[CONFIG_ERROR_SIZE];
    struct config *config = parse(text, error);
    if (config != NULL) {
        config_release(config);
        fail_msg("accepted, wanted \"%s\":\n%s", expected, text);
    }
    assert_string_equal(error, expected);
}

static void assert_range(const struct netaddr_range *range, int family, const char *address,
                         unsigned prefix_length)
{
    uint8_t bytes[16] = { 0 };
    assert_int_equal(inet_pton(family, address, bytes), 1);
    assert_int_equal(range->family, family);
    assert_memory_equal(range->address, bytes, family == AF_INET ? 4 : 16);
    assert_int_equal(range->prefix_length, prefix_length);
}

/* ---- defaults ---- */

static void test_defaults(void **state)
{
    struct config *config = parse_ok(LISTEN);

    assert_int_equal(config->refcount, 1);
    assert_string_equal(config->file, "t.conf");
    assert_int_equal(config->listener_count, 1);
    assert_string_equal(config->listeners[0].address, "127.0.0.1");
    assert_int_equal(config->listeners[0].port, 8080);
    assert_null(config->listeners[0].path);
    assert_null(config->listeners[0].tls);   /* plain */
    assert_int_equal(config->websocket.allowed_origin_count, 0);
    assert_null(config->websocket.allowed_origins);
    assert_int_equal(config->websocket.subprotocol_count, 0);
    assert_null(config->websocket.subprotocols);
    assert_int_equal(config->websocket.max_message_size, 1048576);
    assert_int_equal(config->websocket.ping_interval, 25);
    assert_int_equal(config->websocket.ping_timeout, 60);
    assert_int_equal(config->websocket.handshake_timeout, 10);
    assert_int_equal(config->websocket.close_timeout, 5);
    assert_true(config->websocket.compression.enabled);
    assert_int_equal(config->websocket.compression.level, 1);
    assert_int_equal(config->websocket.compression.min_size, 256);
    assert_int_equal(config->websocket.compression.memory_level, 8);
    assert_int_equal(config->websocket.compression.max_window_bits, 15);
    assert_int_equal(config->limits.max_connections, 100000);
    assert_int_equal(config->limits.outbound_queue_max, 4194304);
    assert_int_equal(config->limits.request_head_max, 8192);
    assert_int_equal(config->limits.max_subscriptions, 256);
    assert_int_equal(config->limits.max_connections_per_ip, 0);
    assert_int_equal(config->limits.messages_per_second, 0);
    assert_int_equal(config->limits.burst, 0);
    assert_int_equal(config->limits.max_memory, 0);
    assert_int_equal(config->route_count, 0);
    assert_null(config->routes);
    assert_null(config->http.static_root);
    assert_null(config->http.api_token);
    assert_int_equal(config->http.metrics_allow_count, 2);
    assert_range(&config->http.metrics_allow[0], AF_INET, "127.0.0.0", 8);
    assert_range(&config->http.metrics_allow[1], AF_INET6, "::1", 128);
    assert_int_equal(config->channel_rule_count, 0);
    assert_null(config->channel_rules);
    assert_null(config->auth.verifier);   /* no auth group: auth is off */
    assert_null(config->auth.cookie);
    assert_true(config->auth.required);
    assert_int_equal(config->proxy.trusted_count, 2);
    assert_range(&config->proxy.trusted[0], AF_INET, "127.0.0.1", 32);
    assert_range(&config->proxy.trusted[1], AF_INET6, "::1", 128);
    assert_null(config->user);   /* privileges are kept */
    assert_int_equal(config->log_level, LOG_LEVEL_INFO);
    assert_int_equal(config->shutdown_timeout, 5);
    assert_int_equal(config->workers, 0);   /* one worker per online CPU */
    config_release(config);
}

static void test_rate_and_memory_limits(void **state)
{
    struct config *config = parse_ok(LISTEN "limits = { messages_per_second = 20; };\n");
    assert_int_equal(config->limits.messages_per_second, 20);
    assert_int_equal(config->limits.burst, 20);    /* one second's worth */
    config_release(config);
    config = parse_ok(LISTEN "limits = { messages_per_second = 20; burst = 100;\n"
                             "  max_memory = 1048576; };\n");
    assert_int_equal(config->limits.burst, 100);
    assert_int_equal(config->limits.max_memory, 1048576);
    config_release(config);
    expect_error(LISTEN "limits = {\n  burst = 5;\n};\n",
                 "t.conf:3: 'limits.burst' needs 'limits.messages_per_second'");
    expect_error(LISTEN "limits = {\n  max_memory = 1048575;\n};\n",
                 "t.conf:3: 'limits.max_memory' must be 0 (no limit) or at least 1048576 bytes");
}

static void test_empty_groups_keep_defaults(void **state)
{
    struct config *config = parse_ok(LISTEN "websocket = { compression = { }; };\nlimits = { };\n"
                                            "http = { };\nroutes = ( );\nchannels = ( );\n"
                                            "proxy = { };\n");
    assert_int_equal(config->websocket.ping_timeout, 60);
    assert_true(config->websocket.compression.enabled);
    assert_int_equal(config->websocket.compression.max_window_bits, 15);
    assert_int_equal(config->proxy.trusted_count, 2);
    assert_int_equal(config->limits.request_head_max, 8192);
    assert_int_equal(config->limits.max_subscriptions, 256);
    assert_null(config->http.static_root);
    assert_null(config->http.api_token);
    assert_int_equal(config->http.metrics_allow_count, 2);
    assert_int_equal(config->route_count, 0);
    assert_int_equal(config->channel_rule_count, 0);
    config_release(config);
}

static void test_every_key_set(void **state)
{
    struct config *config = parse_ok(
        LISTEN
        "websocket = {\n"
        "  allowed_origins = [ \"https://a.example\", \"https://*.b.example:8443\", \"null\" ];\n"
        "  subprotocols = ( \"chat.v2\", \"chat.v1\" );\n"
        "  max_message_size = 2147483648;\n"
        "  ping_interval = 0;\n"
        "  ping_timeout = 1;\n"
        "  handshake_timeout = 3600;\n"
        "  close_timeout = 1;\n"
        "  compression = { enabled = false; level = 9; min_size = 0; memory_level = 1;\n"
        "    max_window_bits = 9; };\n"
        "};\n"
        "limits = { max_connections = 10000000; outbound_queue_max = 1099511627776;\n"
        "  request_head_max = 1048576; max_subscriptions = 100000; };\n"
        "http = { static_root = \"/srv/www\"; api_token = \"s3cr3t-T0ken\";\n"
        "  metrics_allow = [ \"10.0.0.0/8\", \"192.0.2.7\", \"2001:db8::/32\" ]; };\n"
        "channels = ( { match = \"room:*\"; history = 100000; history_ttl = 31536000;\n"
        "  presence = true; publish = \"api_only\"; } );\n"
        "auth = { algorithm = \"HS256\"; secret = \"k\"; cookie = \"jwt\"; required = false; };\n"
        "proxy = { trusted = [ \"10.0.0.0/8\", \"fd00::/8\" ]; };\n"
        "user = \"root\";\n"
        "log_level = \"debug\";\n"
        "shutdown_timeout = 3600;\n");

    assert_int_equal(config->websocket.allowed_origin_count, 3);
    assert_string_equal(config->websocket.allowed_origins[1], "https://*.b.example:8443");
    assert_int_equal(config->websocket.subprotocol_count, 2);
    assert_string_equal(config->websocket.subprotocols[0], "chat.v2");
    assert_true(config->websocket.max_message_size == UINT64_C(2147483648));
    assert_int_equal(config->websocket.ping_interval, 0);
    assert_int_equal(config->websocket.ping_timeout, 1);
    assert_int_equal(config->websocket.handshake_timeout, 3600);
    assert_int_equal(config->websocket.close_timeout, 1);
    assert_false(config->websocket.compression.enabled);
    assert_int_equal(config->websocket.compression.level, 9);
    assert_int_equal(config->websocket.compression.min_size, 0);
    assert_int_equal(config->websocket.compression.memory_level, 1);
    assert_int_equal(config->websocket.compression.max_window_bits, 9);
    assert_int_equal(config->limits.max_connections, 10000000);
    assert_true(config->limits.outbound_queue_max == UINT64_C(1099511627776));
    assert_int_equal(config->limits.request_head_max, 1048576);
    assert_int_equal(config->limits.max_subscriptions, 100000);
    assert_string_equal(config->http.static_root, "/srv/www");
    assert_string_equal(config->http.api_token, "s3cr3t-T0ken");
    assert_int_equal(config->http.metrics_allow_count, 3);
    assert_range(&config->http.metrics_allow[0], AF_INET, "10.0.0.0", 8);
    assert_range(&config->http.metrics_allow[1], AF_INET, "192.0.2.7", 32);
    assert_range(&config->http.metrics_allow[2], AF_INET6, "2001:db8::", 32);
    assert_int_equal(config->channel_rule_count, 1);
    assert_string_equal(config->channel_rules[0].match, "room:*");
    assert_int_equal(config->channel_rules[0].history, 100000);
    assert_int_equal(config->channel_rules[0].history_ttl, 31536000);
    assert_true(config->channel_rules[0].presence);
    assert_int_equal(config->channel_rules[0].publish, PUBLISH_API_ONLY);
    assert_non_null(config->auth.verifier);
    assert_int_equal(config->auth.algorithm, AUTH_HS256);
    assert_string_equal(config->auth.cookie, "jwt");
    assert_false(config->auth.required);
    assert_int_equal(config->proxy.trusted_count, 2);
    assert_range(&config->proxy.trusted[0], AF_INET, "10.0.0.0", 8);
    assert_range(&config->proxy.trusted[1], AF_INET6, "fd00::", 8);
    assert_string_equal(config->user, "root");
    assert_int_equal(config->log_level, LOG_LEVEL_DEBUG);
    assert_int_equal(config->shutdown_timeout, 3600);
    config_release(config);
}

/* ---- integers: type and range, table-driven over every integer key ---- */

struct integer_key {
    const char *group;     /* NULL: top level; "channels[0]" the first rule */
    const char *name;
    const char *min;
    const char *max;
    const char *below;     /* NULL when min is 0 */
    const char *above;
    const char *range;     /* "between A and B" */
};

static const struct integer_key integer_keys[] = {
    { "websocket", "max_message_size", "1", "2147483648", "0", "2147483649",
      "between 1 and 2147483648" },
    { "websocket", "ping_interval", "0", "86399", "-1", "86401", "between 0 and 86400" },
    { "websocket", "ping_timeout", "1", "86400", "0", "86401", "between 1 and 86400" },
    { "websocket", "handshake_timeout", "1", "3600", "0", "3601", "between 1 and 3600" },
    { "websocket", "close_timeout", "1", "3600", "0", "3601", "between 1 and 3600" },
    { "websocket.compression", "level", "0", "9", "-1", "10", "between 0 and 9" },
    { "websocket.compression", "min_size", "0", "2147483648", "-1", "2147483649",
      "between 0 and 2147483648" },
    { "websocket.compression", "memory_level", "1", "9", "0", "10", "between 1 and 9" },
    { "websocket.compression", "max_window_bits", "9", "15", "8", "16", "between 9 and 15" },
    { "limits", "max_connections", "1", "10000000", "0", "10000001", "between 1 and 10000000" },
    { "limits", "outbound_queue_max", "1024", "1099511627776", "1023", "1099511627777",
      "between 1024 and 1099511627776" },
    { "limits", "request_head_max", "1024", "1048576", "1023", "1048577",
      "between 1024 and 1048576" },
    { "limits", "max_subscriptions", "1", "100000", "0", "100001", "between 1 and 100000" },
    { "limits", "max_connections_per_ip", "0", "10000000", "-1", "10000001",
      "between 0 and 10000000" },
    { "limits", "messages_per_second", "0", "1000000", "-1", "1000001", "between 0 and 1000000" },
    { "limits", "max_memory", "0", "1125899906842624", "-1", "1125899906842625",
      "between 0 and 1125899906842624" },
    { "channels[0]", "history", "0", "100000", "-1", "100001", "between 0 and 100000" },
    { "channels[0]", "history_ttl", "0", "31536000", "-1", "31536001",
      "between 0 and 31536000" },
    { NULL, "shutdown_timeout", "1", "3600", "0", "3601", "between 1 and 3600" },
    { NULL, "workers", "0", "256", "-1", "257", "between 0 and 256" },
};

/* The key on line 3 inside its group, or on line 2 at the top level. In
 * the websocket group the other ping key is set too, so that any value in
 * range passes the ping_timeout > ping_interval rule. A dotted group is
 * written nested: libconfig names have no dots. */
static void integer_text(char *out, size_t size, const struct integer_key *key, const char *value)
{
    const char *extra = "";
    if (key->group != NULL && strcmp(key->group, "websocket") == 0)
        extra = strcmp(key->name, "ping_timeout") == 0 ? "  ping_interval = 0;\n"
                                                       : "  ping_timeout = 86400;\n";
    if (key->group != NULL && strcmp(key->group, "channels[0]") == 0)
        snprintf(out, size, LISTEN "channels = ( { match = \"*\";\n  %s = %s;\n} );\n",
                 key->name, value);
    else if (key->group != NULL && strcmp(key->group, "websocket.compression") == 0)
        snprintf(out, size, LISTEN "websocket = { compression = {\n  %s = %s;\n}; };\n",
                 key->name, value);
    else if (key->group != NULL)
        snprintf(out, size, LISTEN "%s = {\n  %s = %s;\n%s};\n", key->group, key->name, value,
                 extra);
    else
        snprintf(out, size, LISTEN "%s = %s;\n", key->name, value);
}

static void integer_expect(const struct integer_key *key, const char *value, const char *problem)
{
    char text[512], expected[CONFIG_ERROR_SIZE], path[64];
    snprintf(path, sizeof(path), "%s%s%s", key->group != NULL ? key->group : "",
             key->group != NULL ? "." : "", key->name);
    snprintf(expected, sizeof(expected), "t.conf:%d: '%s' must be %s",
             key->group != NULL ? 3 : 2, path, problem);
    integer_text(text, sizeof(text), key, value);
    expect_error(text, expected);
}

static void test_integer_keys(void **state)
{
    for (size_t i = 0; i < sizeof(integer_keys) / sizeof(integer_keys[0]); i++) {
        const struct integer_key *key = &integer_keys[i];
        char text[512];
        const char *accepted[] = { key->min, key->max };
        for (size_t j = 0; j < 2; j++) {
            integer_text(text, sizeof(text), key, accepted[j]);
            config_release(parse_ok(text));
        }
        integer_expect(key, "1.5", "an integer");
        integer_expect(key, "\"10\"", "an integer");
        integer_expect(key, "true", "an integer");
        integer_expect(key, "[ 1 ]", "an integer");
        integer_expect(key, key->below, key->range);
        integer_expect(key, key->above, key->range);
        integer_expect(key, "-5", key->range);
        integer_expect(key, "99999999999999999999999", key->range);
    }
}

/* libconfig 1.5 alone would wrap these into range: they must not pass. */
static void test_integers_do_not_wrap(void **state)
{
    expect_error(LISTEN "limits = {\n max_connections = 4294967297;\n};\n",
                 "t.conf:3: 'limits.max_connections' must be between 1 and 10000000");
    expect_error(LISTEN "websocket = {\n max_message_size = 4294968320;\n};\n",
                 "t.conf:3: 'websocket.max_message_size' must be between 1 and 2147483648");
    expect_error(LISTEN "limits = {\n outbound_queue_max = 0x10000000001;\n};\n",
                 "t.conf:3: 'limits.outbound_queue_max' must be between 1024 and 1099511627776");
    expect_error(LISTEN "shutdown_timeout = 0x100000001;\n",
                 "t.conf:2: 'shutdown_timeout' must be between 1 and 3600");
}

static void test_integer_spellings(void **state)
{
    struct config *config = parse_ok(
        LISTEN "limits = { outbound_queue_max = 1099511627776L; request_head_max = 0x400;\n"
               "  max_connections = 7L; };\n"
               "websocket = { max_message_size = 0x80000000; };\n"
               "# 99999999999 in a comment, \"and 2147483648\"\n"
               "http = { static_root = \"/srv/4294967296\"; };\n");
    assert_true(config->limits.outbound_queue_max == UINT64_C(1099511627776));
    assert_int_equal(config->limits.request_head_max, 1024);
    assert_int_equal(config->limits.max_connections, 7);
    assert_true(config->websocket.max_message_size == UINT64_C(2147483648));
    assert_string_equal(config->http.static_root, "/srv/4294967296");
    config_release(config);
}

/* ---- other types ---- */

static void test_type_errors(void **state)
{
    expect_error(LISTEN "websocket = 5;\n", "t.conf:2: 'websocket' must be a group");
    expect_error(LISTEN "limits = ( );\n", "t.conf:2: 'limits' must be a group");
    expect_error(LISTEN "http = \"x\";\n", "t.conf:2: 'http' must be a group");
    expect_error(LISTEN "http = {\n static_root = 5;\n};\n",
                 "t.conf:3: 'http.static_root' must be a string");
    expect_error(LISTEN "log_level = 3;\n",
                 "t.conf:2: 'log_level' must be one of error, warn, info, debug");
    expect_error(LISTEN "log_level = \"verbose\";\n",
                 "t.conf:2: 'log_level' must be one of error, warn, info, debug");
    expect_error(LISTEN "websocket = {\n allowed_origins = \"*\";\n};\n",
                 "t.conf:3: 'websocket.allowed_origins' must be an array of strings");
    expect_error(LISTEN "websocket = {\n allowed_origins = (\n \"*\",\n 5 );\n};\n",
                 "t.conf:5: 'websocket.allowed_origins' must be an array of strings");
    expect_error(LISTEN "websocket = {\n subprotocols = [ 1, 2 ];\n};\n",
                 "t.conf:3: 'websocket.subprotocols' must be an array of strings");
    expect_error(LISTEN "websocket = {\n subprotocols = { a = \"x\"; };\n};\n",
                 "t.conf:3: 'websocket.subprotocols' must be an array of strings");
    expect_error(LISTEN "routes = (\n { path = \"/x\";\n mode = \"broadcast\";\n"
                        " echo_self = \"no\"; } );\n",
                 "t.conf:5: 'routes[0].echo_self' must be true or false");
    expect_error(LISTEN "routes = (\n { path = 5; mode = \"echo\"; } );\n",
                 "t.conf:3: 'routes[0].path' must be a string");
    expect_error(LISTEN "routes = (\n { path = \"/x\"; mode = \"stream\"; } );\n",
                 "t.conf:3: 'routes[0].mode' must be one of echo, broadcast, pubsub");
    expect_error(LISTEN "routes = (\n { path = \"/x\"; mode = \"broadcast\";\n"
                        " presence_events = 1; } );\n",
                 "t.conf:4: 'routes[0].presence_events' must be true or false");
    expect_error(LISTEN "routes = { path = \"/x\"; mode = \"echo\"; };\n",
                 "t.conf:2: 'routes' must be a list of groups");
    expect_error(LISTEN "routes = (\n \"/x\" );\n", "t.conf:3: 'routes' must be a list of groups");

    expect_error(LISTEN "limits = {\n max_subscriptions = \"256\";\n};\n",
                 "t.conf:3: 'limits.max_subscriptions' must be an integer");
    expect_error(LISTEN "channels = { match = \"*\"; };\n",
                 "t.conf:2: 'channels' must be a list of groups");
    expect_error(LISTEN "channels = [ \"*\" ];\n", "t.conf:2: 'channels' must be a list of groups");
    expect_error(LISTEN "channels = (\n { match = \"*\"; },\n \"room:*\" );\n",
                 "t.conf:4: 'channels' must be a list of groups");
    expect_error(LISTEN "channels = (\n { match = 5; } );\n",
                 "t.conf:3: 'channels[0].match' must be a string");
    expect_error(LISTEN "channels = (\n { match = \"*\";\n presence = \"yes\"; } );\n",
                 "t.conf:4: 'channels[0].presence' must be true or false");
    expect_error(LISTEN "channels = (\n { match = \"*\";\n history = 1.5; } );\n",
                 "t.conf:4: 'channels[0].history' must be an integer");
    expect_error(LISTEN "channels = (\n { match = \"*\";\n publish = \"everyone\"; } );\n",
                 "t.conf:4: 'channels[0].publish' must be one of members, anyone, token, "
                 "api_only");
    expect_error(LISTEN "channels = (\n { match = \"*\";\n publish = true; } );\n",
                 "t.conf:4: 'channels[0].publish' must be one of members, anyone, token, "
                 "api_only");
    expect_error(LISTEN "http = {\n api_token = 12345;\n};\n",
                 "t.conf:3: 'http.api_token' must be a string");
    expect_error(LISTEN "http = {\n metrics_allow = \"127.0.0.1\";\n};\n",
                 "t.conf:3: 'http.metrics_allow' must be an array of strings");
    expect_error(LISTEN "http = {\n metrics_allow = ( \"::1\",\n 127 );\n};\n",
                 "t.conf:4: 'http.metrics_allow' must be an array of strings");
    expect_error(LISTEN "http = {\n metrics_allow = { a = \"::1\"; };\n};\n",
                 "t.conf:3: 'http.metrics_allow' must be an array of strings");
    expect_error(LISTEN "auth = \"HS256\";\n", "t.conf:2: 'auth' must be a group");
    expect_error(LISTEN "auth = ( { algorithm = \"HS256\"; } );\n",
                 "t.conf:2: 'auth' must be a group");
    expect_error(LISTEN "auth = {\n algorithm = \"hs256\"; secret = \"k\";\n};\n",
                 "t.conf:3: 'auth.algorithm' must be one of HS256, RS256, ES256");
    expect_error(LISTEN "auth = {\n algorithm = \"none\"; secret = \"k\";\n};\n",
                 "t.conf:3: 'auth.algorithm' must be one of HS256, RS256, ES256");
    expect_error(LISTEN "auth = { algorithm = \"HS256\";\n secret = 42;\n};\n",
                 "t.conf:3: 'auth.secret' must be a string");
    expect_error(LISTEN "auth = { algorithm = \"HS256\";\n secret_file = [ \"a\" ];\n};\n",
                 "t.conf:3: 'auth.secret_file' must be a string");
    expect_error(LISTEN "auth = { algorithm = \"RS256\";\n public_key_file = true;\n};\n",
                 "t.conf:3: 'auth.public_key_file' must be a string");
    expect_error(LISTEN "auth = { algorithm = \"HS256\"; secret = \"k\";\n cookie = 1;\n};\n",
                 "t.conf:3: 'auth.cookie' must be a string");
    expect_error(LISTEN "auth = { algorithm = \"HS256\"; secret = \"k\";\n required = \"no\";\n};\n",
                 "t.conf:3: 'auth.required' must be true or false");

    expect_error(LISTEN "websocket = {\n compression = true;\n};\n",
                 "t.conf:3: 'websocket.compression' must be a group");
    expect_error(LISTEN "websocket = { compression = {\n enabled = 1; }; };\n",
                 "t.conf:3: 'websocket.compression.enabled' must be true or false");
    expect_error(LISTEN "websocket = { compression = {\n level = \"1\"; }; };\n",
                 "t.conf:3: 'websocket.compression.level' must be an integer");
    expect_error(LISTEN "proxy = [ \"127.0.0.1\" ];\n", "t.conf:2: 'proxy' must be a group");
    expect_error(LISTEN "proxy = {\n trusted = \"127.0.0.1\";\n};\n",
                 "t.conf:3: 'proxy.trusted' must be an array of strings");
    expect_error(LISTEN "proxy = {\n trusted = [ 127 ];\n};\n",
                 "t.conf:3: 'proxy.trusted' must be an array of strings");
    expect_error(LISTEN "user = 0;\n", "t.conf:2: 'user' must be a string");
    expect_error(LISTEN "user = [ \"root\" ];\n", "t.conf:2: 'user' must be a string");
    expect_error("listen = ( { address = \"::1\"; port = 443;\n tls = \"on\"; } );\n",
                 "t.conf:2: 'listen[0].tls' must be a group");
    expect_error("listen = ( { address = \"::1\"; port = 443;\n tls = ( ); } );\n",
                 "t.conf:2: 'listen[0].tls' must be a group");
    expect_error("listen = ( {\n path = 5; } );\n", "t.conf:2: 'listen[0].path' must be a string");
}

static void test_unknown_keys(void **state)
{
    expect_error(LISTEN "group = \"wsbroker\";\n", "t.conf:2: unknown key 'group'");
    expect_error(LISTEN "websocket = {\n ping_interval = 5;\n foo = 1;\n};\n",
                 "t.conf:4: unknown key 'websocket.foo'");
    expect_error(LISTEN "websocket = { compression = { enabled = true;\n threshold = 1; }; };\n",
                 "t.conf:3: unknown key 'websocket.compression.threshold'");
    expect_error(LISTEN "websocket = { compression = {\n"
                        " client_no_context_takeover = true; }; };\n",
                 "t.conf:3: unknown key 'websocket.compression.client_no_context_takeover'");
    expect_error(LISTEN "proxy = {\n trusted = [ ];\n headers = [ ];\n};\n",
                 "t.conf:4: unknown key 'proxy.headers'");
    expect_error(LISTEN "compression = { };\n", "t.conf:2: unknown key 'compression'");
    expect_error(LISTEN "limits = {\n max_connections_per_host = 0;\n};\n",
                 "t.conf:3: unknown key 'limits.max_connections_per_host'");
    expect_error(LISTEN "http = {\n metrics_deny = [ ];\n};\n",
                 "t.conf:3: unknown key 'http.metrics_deny'");
    expect_error(LISTEN "channels = (\n { match = \"*\"; },\n { match = \"a\";\n"
                        " max_age = 5; } );\n",
                 "t.conf:5: unknown key 'channels[1].max_age'");
    expect_error(LISTEN "channels = (\n { match = \"*\";\n path = \"/x\"; } );\n",
                 "t.conf:4: unknown key 'channels[0].path'");
    expect_error(LISTEN "auth = { algorithm = \"HS256\"; secret = \"k\";\n issuer = \"me\";\n};\n",
                 "t.conf:3: unknown key 'auth.issuer'");
    expect_error(LISTEN "auth = { algorithm = \"HS256\";\n key = \"k\";\n};\n",
                 "t.conf:3: unknown key 'auth.key'");
    expect_error(LISTEN "limits = {\n max_channels = 5;\n};\n",
                 "t.conf:3: unknown key 'limits.max_channels'");
    expect_error("listen = (\n { address = \"::1\"; port = 1; },\n { address = \"::1\"; port = 2;\n"
                 "   tls = { cert = \"c\";\n password = \"x\"; }; } );\n",
                 "t.conf:5: unknown key 'listen[1].tls.password'");
    expect_error("listen = (\n { path = \"/run/w.sock\";\n owner = \"www\"; } );\n",
                 "t.conf:3: unknown key 'listen[0].owner'");
    expect_error(LISTEN "routes = (\n { path = \"/x\"; mode = \"echo\";\n history = 5; } );\n",
                 "t.conf:4: unknown key 'routes[0].history'");
}

static void test_syntax_errors(void **state)
{
    expect_error(LISTEN "log_level = ;\n", "t.conf:2: syntax error");
    /* libconfig blames the end of the file for an unclosed group */
    expect_error(LISTEN "websocket = {\n ping_interval = 5;\n", "t.conf:4: syntax error");
    expect_error(LISTEN "log_level = \"info\";\nlog_level = \"debug\";\n",
                 "t.conf:3: duplicate setting name");
    expect_error(LISTEN "@include \"other.conf\"\n",
                 "t.conf:2: directives such as @include are not supported");
    expect_error("", "t.conf: 'listen' is required");
    /* strings where no value may stand: caught before libconfig (which
     * would leak them), with libconfig's own words and line */
    expect_error(LISTEN "log_level \"info\";\n", "t.conf:2: syntax error");
    expect_error("\"x\"\n", "t.conf:1: syntax error");
    expect_error(LISTEN "websocket = {\n allowed_origins = \"a\",\n \"b\";\n};\n",
                 "t.conf:4: syntax error");
    expect_error(LISTEN "http = { static_root = \"a\"; };\n\"b\"\n", "t.conf:3: syntax error");

    struct config *config =
        parse_ok(LISTEN "http = { static_root = \"/srv\"\n \"/www\"; };\n"
                        "websocket : { allowed_origins = ( \"*\",\n \"null\" );\n"
                        "  subprotocols = [ \"a\", \"b\" \"c\" ]; };\n");
    assert_string_equal(config->http.static_root, "/srv/www");
    assert_string_equal(config->websocket.allowed_origins[1], "null");
    assert_string_equal(config->websocket.subprotocols[1], "bc");
    config_release(config);
}

/* ---- listen ---- */

static void test_listen(void **state)
{
    struct config *config = parse_ok("listen = ( { address = \"0.0.0.0\"; port = 8080; },\n"
                                     "  { address = \"::\"; port = 8080; },\n"
                                     "  { address = \"fe80::1\"; port = 1; },\n"
                                     "  { address = \"::ffff:10.0.0.1\"; port = 65535; } );\n");
    assert_int_equal(config->listener_count, 4);
    assert_string_equal(config->listeners[1].address, "::");
    assert_int_equal(config->listeners[1].port, 8080);
    assert_string_equal(config->listeners[3].address, "::ffff:10.0.0.1");
    assert_int_equal(config->listeners[3].port, 65535);
    config_release(config);
}

static void test_listen_errors(void **state)
{
    expect_error("log_level = \"info\";\n", "t.conf: 'listen' is required");
    expect_error("listen = ( );\n", "t.conf:1: 'listen' must not be empty");
    expect_error("listen = { address = \"::\"; port = 1; };\n",
                 "t.conf:1: 'listen' must be a list of groups");
    expect_error("listen = (\n 8080 );\n", "t.conf:2: 'listen' must be a list of groups");
    expect_error("listen = (\n { address = \"::\"; } );\n", "t.conf:2: 'listen[0].port' is required");
    expect_error("listen = (\n { port = 1; } );\n", "t.conf:2: 'listen[0].address' is required");
    const char *bad[] = { "localhost", "[::1]", "1.2.3", "", "::1%lo", "0.0.0.0:80", "1.2.3.4 " };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), "listen = (\n { port = 80;\n address = \"%s\"; } );\n",
                 bad[i]);
        expect_error(text, "t.conf:3: 'listen[0].address' must be a numeric IPv4 or IPv6 address");
    }
    expect_error("listen = (\n { port = 80;\n address = 1; } );\n",
                 "t.conf:3: 'listen[0].address' must be a string");
    expect_error("listen = (\n { address = \"::\";\n port = 0; } );\n",
                 "t.conf:3: 'listen[0].port' must be between 1 and 65535");
    expect_error("listen = (\n { address = \"::\";\n port = 65536; } );\n",
                 "t.conf:3: 'listen[0].port' must be between 1 and 65535");
    expect_error("listen = (\n { address = \"::\";\n port = \"80\"; } );\n",
                 "t.conf:3: 'listen[0].port' must be an integer");
    expect_error("listen = (\n { address = \"::1\"; port = 80; },\n"
                 " { address = \"0:0::1\"; port = 80; } );\n",
                 "t.conf:3: 'listen[1]' repeats listen[0] (0:0::1 port 80)");
    expect_error("listen = (\n { } );\n",
                 "t.conf:2: 'listen[0]' needs 'address' and 'port', or 'path'");
    expect_error("listen = (\n { address = \"::1\"; port = 80;\n mode = \"0600\"; } );\n",
                 "t.conf:3: 'listen[0].mode' applies only to Unix socket listeners (path)");
}

/* ---- Unix socket listeners ---- */

static void test_listen_unix(void **state)
{
    struct config *config = parse_ok("listen = ( { path = \"/run/wsbroker/wsbroker.sock\"; },\n"
                                     "  { path = \"ws.sock\"; mode = \"0600\"; },\n"
                                     "  { path = \"/run/a.sock\"; mode = 432; },\n"
                                     "  { address = \"127.0.0.1\"; port = 8080; },\n"
                                     "  { path = \"../run/b.sock\"; mode = \"7\"; } );\n");
    assert_int_equal(config->listener_count, 5);
    assert_string_equal(config->listeners[0].path, "/run/wsbroker/wsbroker.sock");
    assert_null(config->listeners[0].address);
    assert_null(config->listeners[0].tls);
    assert_int_equal(config->listeners[0].mode, 0660);
    /* relative to the config file's directory, stored absolute */
    assert_string_equal(config->listeners[1].path, "/etc/wsbroker/ws.sock");
    assert_int_equal(config->listeners[1].mode, 0600);
    assert_int_equal(config->listeners[2].mode, 0660);   /* 432 is 0660 */
    assert_null(config->listeners[3].path);
    assert_string_equal(config->listeners[3].address, "127.0.0.1");
    assert_string_equal(config->listeners[4].path, "/etc/wsbroker/../run/b.sock");
    assert_int_equal(config->listeners[4].mode, 07);
    config_release(config);

    static const struct {
        const char *mode;
        unsigned bits;
    } modes[] = { { "\"0\"", 0 }, { "\"0777\"", 0777 }, { "\"777\"", 0777 }, { "\"0000\"", 0 },
                  { "0", 0 }, { "511", 0777 }, { "0x1b6", 0666 }, { "420L", 0644 } };
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), "listen = ( { path = \"/s\"; mode = %s; } );\n",
                 modes[i].mode);
        config = parse_ok(text);
        assert_int_equal(config->listeners[0].mode, modes[i].bits);
        config_release(config);
    }
}

static void test_listen_unix_errors(void **state)
{
    static const char *const bad_modes[] = { "\"0800\"", "\"01000\"", "\"1777\"", "\"\"",
                                              "\"0o660\"", "\" 0660\"", "\"0660 \"", "\"rw-rw----\"",
                                              "\"-1\"", "512", "-1", "4294967728", "true",
                                              "0.5", "[ 6, 6, 0 ]" };
    for (size_t i = 0; i < sizeof(bad_modes) / sizeof(bad_modes[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), "listen = ( { path = \"/s\";\n mode = %s; } );\n",
                 bad_modes[i]);
        expect_error(text, "t.conf:2: 'listen[0].mode' must be a string of octal digits "
                           "(\"0660\") or an integer 0 to 511");
    }
    /* libconfig reads 0660 as decimal 660: refused before it can mean
     * other bits (0444 would otherwise quietly be 0674) */
    expect_error("listen = ( { path = \"/s\";\n mode = 0660; } );\n",
                 "t.conf:2: an integer with a leading zero is not octal here (0660 would read "
                 "as 660): write a mode as a string, \"0660\"");

    expect_error("listen = ( { path = \"/s\";\n address = \"::1\"; } );\n",
                 "t.conf:2: 'listen[0].address' and 'listen[0].path' exclude each other");
    expect_error("listen = ( { address = \"::1\"; port = 80;\n path = \"/s\"; } );\n",
                 "t.conf:1: 'listen[0].address' and 'listen[0].path' exclude each other");
    expect_error("listen = ( { path = \"/s\";\n port = 80; } );\n",
                 "t.conf:2: 'listen[0].port' and 'listen[0].path' exclude each other");
    expect_error("listen = ( { path = \"\";\n mode = 384; } );\n",
                 "t.conf:1: 'listen[0].path' must not be empty");

    char text[512], expected[CONFIG_ERROR_SIZE], path[128];
    memset(path, 'a', sizeof(path));
    path[0] = '/';
    path[108] = '\0';   /* 108 bytes: one too many for sun_path */
    snprintf(text, sizeof(text), "listen = ( {\n path = \"%s\"; } );\n", path);
    snprintf(expected, sizeof(expected),
             "t.conf:2: 'listen[0].path' (%s) is longer than the 107 bytes of a Unix socket path",
             path);
    expect_error(text, expected);
    path[107] = '\0';
    snprintf(text, sizeof(text), "listen = ( {\n path = \"%s\"; } );\n", path);
    config_release(parse_ok(text));
    /* a relative path counts with the directory it resolves against */
    memset(path, 'a', sizeof(path));
    path[107 - strlen("/etc/wsbroker/") + 1] = '\0';
    snprintf(text, sizeof(text), "listen = ( {\n path = \"%s\"; } );\n", path);
    snprintf(expected, sizeof(expected), "t.conf:2: 'listen[0].path' (/etc/wsbroker/%s) is longer "
             "than the 107 bytes of a Unix socket path", path);
    expect_error(text, expected);

    expect_error("listen = ( { path = \"/run/w.sock\"; },\n { address = \"::\"; port = 1; },\n"
                 " { path = \"/run/w.sock\"; mode = \"0600\"; } );\n",
                 "t.conf:3: 'listen[2]' repeats listen[0] (/run/w.sock)");
    /* the same file named relative and absolute */
    expect_error("listen = ( { path = \"/etc/wsbroker/w.sock\"; },\n { path = \"w.sock\"; } );\n",
                 "t.conf:2: 'listen[1]' repeats listen[0] (/etc/wsbroker/w.sock)");
    config_release(parse_ok("listen = ( { path = \"/run/a.sock\"; },\n"
                            " { path = \"/run/b.sock\"; } );\n"));
}

/* ---- websocket cross-key rules and policy values ---- */

static void test_ping_rules(void **state)
{
    expect_error(LISTEN "websocket = {\n ping_interval = 30;\n ping_timeout = 30;\n};\n",
                 "t.conf:4: 'websocket.ping_timeout' (30) must be greater than "
                 "'websocket.ping_interval' (30)");
    expect_error(LISTEN "websocket = {\n ping_timeout = 10;\n};\n",
                 "t.conf:3: 'websocket.ping_timeout' (10) must be greater than "
                 "'websocket.ping_interval' (25)");
    /* only the interval was set: blame its line */
    expect_error(LISTEN "websocket = {\n handshake_timeout = 5;\n ping_interval = 100;\n};\n",
                 "t.conf:4: 'websocket.ping_timeout' (60) must be greater than "
                 "'websocket.ping_interval' (100)");
    expect_error(LISTEN "websocket = {\n ping_interval = 86400;\n ping_timeout = 86400;\n};\n",
                 "t.conf:4: 'websocket.ping_timeout' (86400) must be greater than "
                 "'websocket.ping_interval' (86400)");

    struct config *config =
        parse_ok(LISTEN "websocket = { ping_interval = 0; ping_timeout = 1; };\n");
    assert_int_equal(config->websocket.ping_interval, 0);
    assert_int_equal(config->websocket.ping_timeout, 1);
    config_release(config);
    config = parse_ok(LISTEN "websocket = { ping_interval = 59; };\n");
    assert_int_equal(config->websocket.ping_timeout, 60);
    config_release(config);
}

static void test_origins(void **state)
{
    const char *good[] = { "*", "null", "https://example.com", "http://localhost:8080",
                           "https://*.example.com", "https://*.example.com:8443",
                           "http://[::1]:8080", "http://127.0.0.1", "chrome-extension://abcdef",
                           "HTTPS://Example.COM" };
    const char *bad[] = { "", "example.com", "https://example.com/", "https://example.com/app",
                          "https://", "https://:80", "https://a:0", "https://a:65536",
                          "https://a:", "https://a:08080x", "*.example.com", "https://*",
                          "https://user@example.com", "https://*.[::1]", "https://[::1",
                          "1http://a", "https://a b", "Null" };
    char text[256];

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        snprintf(text, sizeof(text), LISTEN "websocket = { allowed_origins = [ \"%s\" ]; };\n",
                 good[i]);
        struct config *config = parse_ok(text);
        assert_string_equal(config->websocket.allowed_origins[0], good[i]);
        config_release(config);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char expected[CONFIG_ERROR_SIZE];
        snprintf(text, sizeof(text),
                 LISTEN "websocket = {\n allowed_origins = [ \"*\",\n \"%s\" ];\n};\n", bad[i]);
        snprintf(expected, sizeof(expected),
                 "t.conf:4: 'websocket.allowed_origins': \"%s\" is not \"*\", \"null\" or "
                 "scheme://host[:port]", bad[i]);
        expect_error(text, expected);
    }
}

static void test_subprotocols(void **state)
{
    struct config *config =
        parse_ok(LISTEN "websocket = { subprotocols = [ \"mqtt\", \"v1.chat+json\", \"a~b\" ]; };\n");
    assert_int_equal(config->websocket.subprotocol_count, 3);
    config_release(config);
    expect_error(LISTEN "websocket = {\n subprotocols = [ \"chat\",\n \"chat v1\" ];\n};\n",
                 "t.conf:4: 'websocket.subprotocols': \"chat v1\" is not an HTTP token");
    expect_error(LISTEN "websocket = {\n subprotocols = [\n \"\" ];\n};\n",
                 "t.conf:4: 'websocket.subprotocols': \"\" is not an HTTP token");
    expect_error(LISTEN "websocket = {\n subprotocols = [\n \"a,b\" ];\n};\n",
                 "t.conf:4: 'websocket.subprotocols': \"a,b\" is not an HTTP token");
}

/* ---- http.static_root ---- */

static void expect_static_root(const char *base, const char *value, const char *expected)
{
    char text[256], error[CONFIG_ERROR_SIZE];
    snprintf(text, sizeof(text), LISTEN "http = { static_root = \"%s\"; };\n", value);
    struct config *config = config_parse(text, "t.conf", base, error, sizeof(error));
    if (config == NULL)
        fail_msg("%s", error);
    if (expected == NULL)
        assert_null(config->http.static_root);
    else
        assert_string_equal(config->http.static_root, expected);
    config_release(config);
}

static void test_static_root(void **state)
{
    char *cwd = getcwd(NULL, 0);
    char expected[4096];
    assert_non_null(cwd);

    expect_static_root("/etc/wsbroker", "../www", "/etc/wsbroker/../www");
    expect_static_root("/etc/wsbroker/", "www", "/etc/wsbroker/www");
    expect_static_root("/", "www", "/www");
    expect_static_root("/etc/wsbroker", "/usr/share/wsbroker/www", "/usr/share/wsbroker/www");
    expect_static_root("/etc/wsbroker", "", NULL);
    snprintf(expected, sizeof(expected), "%s/conf/../www", cwd);
    expect_static_root("conf", "../www", expected);
    snprintf(expected, sizeof(expected), "%s/www", cwd);
    expect_static_root(".", "www", expected);
    expect_static_root(NULL, "www", expected);
    free(cwd);
}

/* ---- routes ---- */

static void test_route_defaults(void **state)
{
    struct config *config = parse_ok(LISTEN "routes = (\n"
                                            " { path = \"/chat/:room\"; mode = \"broadcast\"; },\n"
                                            " { path = \"/t/:a/x/:b_2\"; mode = \"broadcast\";\n"
                                            "   echo_self = false; },\n"
                                            " { path = \"/lobby\"; mode = \"broadcast\"; },\n"
                                            " { path = \"/feeds/all/\"; mode = \"broadcast\"; },\n"
                                            " { path = \"/\"; mode = \"broadcast\"; },\n"
                                            " { path = \"/echo\"; mode = \"echo\"; },\n"
                                            " { path = \"/room/:r\"; mode = \"broadcast\";\n"
                                            "   channel = \"room:{r}\"; }\n"
                                            ");\n");
    assert_int_equal(config->route_count, 7);
    const struct route_config *routes = config->routes;
    assert_string_equal(routes[0].channel, "{room}");
    assert_true(routes[0].echo_self);
    assert_int_equal(routes[0].mode, ROUTE_MODE_BROADCAST);
    assert_int_equal(routes[0].line, 3);
    assert_string_equal(routes[1].channel, "{a}:{b_2}");
    assert_false(routes[1].echo_self);
    assert_int_equal(routes[1].line, 4);
    assert_string_equal(routes[2].channel, "lobby");
    assert_string_equal(routes[3].channel, "feeds/all/");
    assert_string_equal(routes[4].channel, "root");
    assert_string_equal(routes[5].path, "/echo");
    assert_int_equal(routes[5].mode, ROUTE_MODE_ECHO);
    assert_null(routes[5].channel);
    assert_string_equal(routes[6].channel, "room:{r}");
    assert_int_equal(routes[6].line, 10);
    config_release(config);
}

static void test_route_errors(void **state)
{
    expect_error(LISTEN "routes = (\n { mode = \"echo\"; } );\n",
                 "t.conf:3: 'routes[0].path' is required");
    expect_error(LISTEN "routes = (\n { path = \"/x\"; } );\n",
                 "t.conf:3: 'routes[0].mode' is required");
    expect_error(LISTEN "routes = (\n { path = \"/x\"; mode = \"echo\";\n channel = \"x\"; } );\n",
                 "t.conf:4: 'routes[0].channel' applies only to broadcast routes");
    expect_error(LISTEN "routes = (\n { path = \"/x\"; mode = \"echo\";\n echo_self = true; } );\n",
                 "t.conf:4: 'routes[0].echo_self' applies only to broadcast and pubsub routes");
    expect_error(LISTEN "routes = (\n { path = \"/x\"; mode = \"echo\";\n"
                        " presence_events = false; } );\n",
                 "t.conf:4: 'routes[0].presence_events' applies only to broadcast routes");
    expect_error(LISTEN "routes = (\n { path = \"/echo\"; mode = \"echo\"; },\n"
                        " { path = \"/a\"; mode = \"echo\"; },\n"
                        " { mode = \"broadcast\";\n path = \"/echo\"; } );\n",
                 "t.conf:6: 'routes[2].path' duplicates routes[0] (line 3)");
    expect_error(LISTEN "routes = (\n { path = \"/chat/:room\"; mode = \"broadcast\"; },\n"
                        " { path = \"/chat/lobby\"; mode = \"echo\"; } );\n",
                 "t.conf:4: 'routes[1].path' is never reached: routes[0] '/chat/:room' (line 3) "
                 "comes first and matches every path it does");
    expect_error(LISTEN "routes = (\n { path = \"/chat/:room\"; mode = \"broadcast\"; },\n"
                        " { path = \"/chat/:name\"; mode = \"broadcast\"; } );\n",
                 "t.conf:4: 'routes[1].path' is never reached: routes[0] '/chat/:room' (line 3) "
                 "comes first and matches every path it does");
    expect_error(LISTEN "routes = (\n { path = \"/~me\"; mode = \"broadcast\"; } );\n",
                 "t.conf:3: 'routes[0].path' gives no valid default channel (invalid character "
                 "in channel template); set 'routes[0].channel'");

    /* overlapping but each reachable: fine */
    struct config *config = parse_ok(LISTEN "routes = (\n"
                                            " { path = \"/chat/lobby\"; mode = \"echo\"; },\n"
                                            " { path = \"/chat/:room\"; mode = \"broadcast\"; },\n"
                                            " { path = \"/chat/:room/\"; mode = \"broadcast\"; },\n"
                                            " { path = \"/:any/:room\"; mode = \"echo\"; },\n"
                                            " { path = \"/~me\"; mode = \"broadcast\";\n"
                                            "   channel = \"me\"; }\n"
                                            ");\n");
    assert_int_equal(config->route_count, 5);
    config_release(config);
}

static void test_route_patterns(void **state)
{
    static const struct {
        const char *path;
        const char *problem;
    } bad[] = {
        { "chat", "path must start with '/'" },
        { "", "path must start with '/'" },
        { "/a//b", "empty path segment" },
        { "//", "empty path segment" },
        { "/a/:", "empty parameter name" },
        { "/a/:b-c", "invalid character in parameter name" },
        { "/:x/:x", "duplicate parameter name" },
        { "/a b", "invalid character in path segment" },
        { "/a/%20", "invalid character in path segment" },
        { "/a?b", "invalid character in path segment" },
        { "/./a", "'.' or '..' path segment" },
        { "/a/..", "'.' or '..' path segment" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[256], expected[CONFIG_ERROR_SIZE];
        snprintf(text, sizeof(text), LISTEN "routes = (\n { mode = \"echo\";\n path = \"%s\"; } );\n",
                 bad[i].path);
        snprintf(expected, sizeof(expected), "t.conf:4: 'routes[0].path' is invalid: %s",
                 bad[i].problem);
        expect_error(text, expected);
    }
    static const struct {
        const char *channel;
        const char *problem;
    } bad_channel[] = {
        { "", "empty channel template" },
        { "room:{room", "unclosed '{' in channel template" },
        { "{nope}", "channel template names a parameter the path does not have" },
        { "{}", "channel template names a parameter the path does not have" },
        { "room {room}", "invalid character in channel template" },
        { "room}", "invalid character in channel template" },
    };
    for (size_t i = 0; i < sizeof(bad_channel) / sizeof(bad_channel[0]); i++) {
        char text[256], expected[CONFIG_ERROR_SIZE];
        snprintf(text, sizeof(text),
                 LISTEN "routes = (\n { path = \"/c/:room\"; mode = \"broadcast\";\n"
                        " channel = \"%s\"; } );\n", bad_channel[i].channel);
        snprintf(expected, sizeof(expected), "t.conf:4: 'routes[0].channel' is invalid: %s",
                 bad_channel[i].problem);
        expect_error(text, expected);
    }
}

static void test_pubsub_routes(void **state)
{
    struct config *config = parse_ok(LISTEN "routes = (\n"
                                            " { path = \"/chat/:room\"; mode = \"broadcast\";\n"
                                            "   presence_events = true; },\n"
                                            " { path = \"/ws\"; mode = \"pubsub\"; },\n"
                                            " { path = \"/quiet\"; mode = \"pubsub\";\n"
                                            "   echo_self = false; },\n"
                                            " { path = \"/t/:tenant\"; mode = \"pubsub\"; },\n"
                                            " { path = \"/echo\"; mode = \"echo\"; }\n"
                                            ");\n");
    const struct route_config *routes = config->routes;
    assert_int_equal(config->route_count, 5);
    assert_int_equal(routes[0].mode, ROUTE_MODE_BROADCAST);
    assert_true(routes[0].presence_events);
    assert_string_equal(routes[0].channel, "{room}");
    assert_int_equal(routes[1].mode, ROUTE_MODE_PUBSUB);
    assert_null(routes[1].channel);   /* pubsub names channels per message */
    assert_true(routes[1].echo_self);
    assert_false(routes[1].presence_events);
    assert_int_equal(routes[1].line, 5);
    assert_false(routes[2].echo_self);
    assert_int_equal(routes[3].mode, ROUTE_MODE_PUBSUB);
    assert_null(routes[3].channel);
    assert_false(routes[4].presence_events);
    config_release(config);

    config = parse_ok(LISTEN "routes = ( { path = \"/c/:r\"; mode = \"broadcast\"; } );\n");
    assert_false(config->routes[0].presence_events);
    config_release(config);

    expect_error(LISTEN "routes = (\n { path = \"/ws\"; mode = \"pubsub\";\n channel = \"x\"; } );\n",
                 "t.conf:4: 'routes[0].channel' applies only to broadcast routes");
    expect_error(LISTEN "routes = (\n { path = \"/ws\"; mode = \"pubsub\";\n"
                        " presence_events = true; } );\n",
                 "t.conf:4: 'routes[0].presence_events' applies only to broadcast routes");
    expect_error(LISTEN "routes = (\n { path = \"/ws\"; mode = \"pubsub\"; },\n"
                        " { path = \"/ws\"; mode = \"echo\"; } );\n",
                 "t.conf:4: 'routes[1].path' duplicates routes[0] (line 3)");
    expect_error(LISTEN "routes = (\n { path = \"/:any\"; mode = \"pubsub\"; },\n"
                        " { path = \"/ws\"; mode = \"broadcast\"; } );\n",
                 "t.conf:4: 'routes[1].path' is never reached: routes[0] '/:any' (line 3) "
                 "comes first and matches every path it does");
    /* a pubsub path is checked like any other; there is no template to check */
    expect_error(LISTEN "routes = (\n { mode = \"pubsub\";\n path = \"/w s\"; } );\n",
                 "t.conf:4: 'routes[0].path' is invalid: invalid character in path segment");
}

/* ---- channel rules ---- */

static void test_channels(void **state)
{
    struct config *config = parse_ok(LISTEN "channels = (\n"
                                            " { match = \"room:*\"; history = 50; history_ttl = 3600;\n"
                                            "   presence = true; publish = \"members\"; },\n"
                                            " { match = \"news\"; publish = \"anyone\"; },\n"
                                            " { match = \"user:*:inbox\"; publish = \"token\"; },\n"
                                            " { match = \"*\";\n"
                                            "   publish = \"api_only\"; }\n"
                                            ");\n");
    const struct channel_rule *rules = config->channel_rules;
    assert_int_equal(config->channel_rule_count, 4);
    assert_string_equal(rules[0].match, "room:*");
    assert_int_equal(rules[0].history, 50);
    assert_int_equal(rules[0].history_ttl, 3600);
    assert_true(rules[0].presence);
    assert_int_equal(rules[0].publish, PUBLISH_MEMBERS);
    assert_int_equal(rules[0].line, 3);
    assert_string_equal(rules[1].match, "news");
    assert_int_equal(rules[1].history, 0);        /* defaults */
    assert_int_equal(rules[1].history_ttl, 0);
    assert_false(rules[1].presence);
    assert_int_equal(rules[1].publish, PUBLISH_ANYONE);
    assert_int_equal(rules[1].line, 5);
    assert_int_equal(rules[2].publish, PUBLISH_TOKEN);
    assert_int_equal(rules[3].publish, PUBLISH_API_ONLY);
    assert_int_equal(rules[3].line, 7);
    config_release(config);

    config = parse_ok(LISTEN "channels = ( { match = \"a\"; } );\n");
    assert_int_equal(config->channel_rules[0].publish, PUBLISH_MEMBERS);
    config_release(config);

    char pattern[200];
    memset(pattern, 'p', 128);
    pattern[0] = '*';
    pattern[128] = '\0';
    char text[512];
    snprintf(text, sizeof(text), LISTEN "channels = ( { match = \"%s\"; } );\n", pattern);
    config = parse_ok(text);
    assert_int_equal(strlen(config->channel_rules[0].match), 128);
    config_release(config);
    config = parse_ok(LISTEN "channels = ( { match = \"aZ09_.:@/-*\"; } );\n");
    config_release(config);

    expect_error(LISTEN "channels = (\n { history = 5; } );\n",
                 "t.conf:3: 'channels[0].match' is required");
    memset(pattern, 'p', 129);   /* one over */
    pattern[129] = '\0';
    const char *bad[] = { "", "room 1", "room:{x}", "caf\xc3\xa9", "a+b", "a~b", "a?b", "a%20",
                          pattern };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(text, sizeof(text),
                 LISTEN "channels = (\n { match = \"a\"; },\n { history = 1;\n match = \"%s\"; } );\n",
                 bad[i]);
        expect_error(text, "t.conf:5: 'channels[1].match' must be 1 to 128 characters of "
                           "A-Z a-z 0-9 _ . : @ / - *");
    }
}

static void test_channel_rule_lookup(void **state)
{
    struct config *config = parse_ok(LISTEN "channels = (\n"
                                            " { match = \"room:vip\"; history = 1; },\n"
                                            " { match = \"room:*\"; history = 2; },\n"
                                            " { match = \"*:log\"; history = 3; },\n"
                                            " { match = \"room:vip\"; history = 4; }\n"
                                            ");\n");
    assert_ptr_equal(config_channel_rule(config, "room:vip"), &config->channel_rules[0]);
    assert_ptr_equal(config_channel_rule(config, "room:lobby"), &config->channel_rules[1]);
    assert_ptr_equal(config_channel_rule(config, "room:"), &config->channel_rules[1]);
    /* first match wins even where a later rule also matches */
    assert_ptr_equal(config_channel_rule(config, "room:log"), &config->channel_rules[1]);
    assert_ptr_equal(config_channel_rule(config, "sys:log"), &config->channel_rules[2]);
    assert_ptr_equal(config_channel_rule(config, "room:vip:x"), &config->channel_rules[1]);

    /* no rule matches: the built-in default */
    const struct channel_rule *fallback = config_channel_rule(config, "news");
    assert_non_null(fallback);
    assert_true(fallback < config->channel_rules ||
                fallback >= config->channel_rules + config->channel_rule_count);
    assert_string_equal(fallback->match, "*");
    assert_int_equal(fallback->history, 0);
    assert_int_equal(fallback->history_ttl, 0);
    assert_false(fallback->presence);
    assert_int_equal(fallback->publish, PUBLISH_MEMBERS);
    assert_ptr_equal(config_channel_rule(config, "ROOM:x"), fallback);   /* case matters */
    assert_ptr_equal(config_channel_rule(config, NULL), fallback);
    config_release(config);

    config = parse_ok(LISTEN);
    assert_ptr_equal(config_channel_rule(config, "room:lobby"), fallback);
    config_release(config);
    assert_ptr_equal(config_channel_rule(NULL, "room:lobby"), fallback);

    config = parse_ok(LISTEN "channels = ( { match = \"*\"; publish = \"anyone\"; } );\n");
    assert_ptr_equal(config_channel_rule(config, "anything"), &config->channel_rules[0]);
    config_release(config);
}

/* ---- http.api_token and http.metrics_allow ---- */

static void test_api_token(void **state)
{
    struct config *config = parse_ok(LISTEN "http = { api_token = \"\"; };\n");
    assert_null(config->http.api_token);   /* "" is unset: /api/ stays off */
    config_release(config);
    config = parse_ok(LISTEN "http = { api_token = \"Ab0-._~+/=!$%&'()*,;:@[]{}|^`#?<>\\\\\"; };\n");
    assert_string_equal(config->http.api_token, "Ab0-._~+/=!$%&'()*,;:@[]{}|^`#?<>\\");
    config_release(config);

    static const char *const bad[] = { "two words", " lead", "trail ", "tab\\there", "nl\\n",
                                       "caf\xc3\xa9", "del\x7f" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), LISTEN "http = {\n static_root = \"\";\n api_token = \"%s\";\n};\n",
                 bad[i]);
        expect_error(text, "t.conf:4: 'http.api_token' must be printable ASCII without spaces");
    }
}

static void test_metrics_allow(void **state)
{
    struct config *config = parse_ok(LISTEN "http = { metrics_allow = [ ]; };\n");
    assert_int_equal(config->http.metrics_allow_count, 0);   /* nobody may scrape */
    config_release(config);

    config = parse_ok(LISTEN "http = { metrics_allow = ( \"0.0.0.0/0\", \"::/0\",\n"
                             " \"fe80::1\", \"10.1.2.3/32\" ); };\n");
    assert_int_equal(config->http.metrics_allow_count, 4);
    assert_range(&config->http.metrics_allow[0], AF_INET, "0.0.0.0", 0);
    assert_range(&config->http.metrics_allow[1], AF_INET6, "::", 0);
    assert_range(&config->http.metrics_allow[2], AF_INET6, "fe80::1", 128);
    assert_range(&config->http.metrics_allow[3], AF_INET, "10.1.2.3", 32);
    config_release(config);

    static const char *const bad[] = { "", "localhost", "127.0.0.1/33", "::1/129", "10.0.0.1/8",
                                       "1.2.3", "1.2.3.4/", "/8", "[::1]", "1.2.3.4 ",
                                       "127.0.0.0/-1" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text),
                 LISTEN "http = {\n metrics_allow = [ \"::1\",\n \"%s\" ];\n};\n", bad[i]);
        expect_error(text, "t.conf:4: 'http.metrics_allow[1]' is not an address or CIDR range");
    }
    expect_error(LISTEN "http = {\n metrics_allow = [\n \"bad\" ];\n};\n",
                 "t.conf:4: 'http.metrics_allow[0]' is not an address or CIDR range");
}

/* ---- files ---- */

static char *write_temp(const char *directory, const char *name, const char *text, size_t length)
{
    char *path = malloc(strlen(directory) + strlen(name) + 2);
    assert_non_null(path);
    sprintf(path, "%s/%s", directory, name);
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    assert_int_equal(fwrite(text, 1, length, file), length);
    assert_int_equal(fclose(file), 0);
    return path;
}

static void test_load_file(void **state)
{
    char directory[] = "/tmp/wsbroker-test-XXXXXX";
    char error[CONFIG_ERROR_SIZE], expected[CONFIG_ERROR_SIZE * 2];
    assert_non_null(mkdtemp(directory));

    static const char good[] = LISTEN "http = { static_root = \"www\"; };\n";
    char *good_path = write_temp(directory, "good.conf", good, sizeof(good) - 1);
    struct config *config = config_load(good_path, error, sizeof(error));
    if (config == NULL)
        fail_msg("%s", error);
    assert_string_equal(config->file, good_path);
    snprintf(expected, sizeof(expected), "%s/www", directory);
    assert_string_equal(config->http.static_root, expected);
    config_release(config);

    static const char bad[] = LISTEN "\nlimits = {\n  max_connections = 0;\n};\n";
    char *bad_path = write_temp(directory, "bad.conf", bad, sizeof(bad) - 1);
    assert_null(config_load(bad_path, error, sizeof(error)));
    snprintf(expected, sizeof(expected),
             "%s:4: 'limits.max_connections' must be between 1 and 10000000", bad_path);
    assert_string_equal(error, expected);

    static const char nul[] = LISTEN "log_level = \"info\";\0\nfoo = 1;\n";
    char *nul_path = write_temp(directory, "nul.conf", nul, sizeof(nul) - 1);
    assert_null(config_load(nul_path, error, sizeof(error)));
    snprintf(expected, sizeof(expected), "%s: contains a NUL byte", nul_path);
    assert_string_equal(error, expected);

    assert_null(config_load(directory, error, sizeof(error)));
    snprintf(expected, sizeof(expected), "%s: cannot read: %s", directory, strerror(EISDIR));
    assert_string_equal(error, expected);

    assert_null(config_load("/nonexistent/wsbroker.conf", error, sizeof(error)));
    assert_string_equal(error, "/nonexistent/wsbroker.conf: cannot read: No such file or directory");

    assert_int_equal(unlink(good_path), 0);
    assert_int_equal(unlink(bad_path), 0);
    assert_int_equal(unlink(nul_path), 0);
    assert_int_equal(rmdir(directory), 0);
    free(good_path);
    free(bad_path);
    free(nul_path);
}

/* A valid file of exactly limit bytes: the listener, then one comment. */
static char *write_padded(const char *directory, size_t length)
{
    char *text = malloc(length);
    assert_non_null(text);
    memset(text, '#', length);
    memcpy(text, LISTEN, strlen(LISTEN));
    text[length - 1] = '\n';
    char *path = write_temp(directory, "big.conf", text, length);
    free(text);
    return path;
}

static void test_load_size_limit(void **state)
{
    char directory[] = "/tmp/wsbroker-test-XXXXXX";
    char error[CONFIG_ERROR_SIZE], expected[CONFIG_ERROR_SIZE * 2];
    const size_t limit = 1024 * 1024;
    assert_non_null(mkdtemp(directory));

    char *path = write_padded(directory, limit);
    struct config *config = config_load(path, error, sizeof(error));
    if (config == NULL)
        fail_msg("%s", error);
    config_release(config);
    free(path);

    path = write_padded(directory, limit + 1);
    assert_null(config_load(path, error, sizeof(error)));
    snprintf(expected, sizeof(expected), "%s: cannot read: %s", path, strerror(EFBIG));
    assert_string_equal(error, expected);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rmdir(directory), 0);
    free(path);
}

/* ---- auth ---- */

/* PEM public key of a fresh key pair: "RSA" (2048 bits) or "EC" (P-256). */
static char *public_key_pem(const char *type, size_t *length)
{
    EVP_PKEY *key = strcmp(type, "RSA") == 0 ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048)
                                             : EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(key);
    BIO *bio = BIO_new(BIO_s_mem());
    assert_non_null(bio);
    assert_int_equal(PEM_write_bio_PUBKEY(bio, key), 1);
    char *data = NULL;
    long size = BIO_get_mem_data(bio, &data);
    assert_true(size > 0);
    char *pem = malloc((size_t)size + 1);
    assert_non_null(pem);
    memcpy(pem, data, (size_t)size);
    pem[size] = '\0';
    *length = (size_t)size;
    BIO_free(bio);
    EVP_PKEY_free(key);
    return pem;
}

/* A temporary directory standing for the config file's directory, with
 * the key files the tests name relative to it. */
struct key_files {
    char directory[64];
    char *paths[12];
    size_t count;
};

static void key_file(struct key_files *files, const char *name, const char *text, size_t length)
{
    assert_true(files->count < sizeof(files->paths) / sizeof(files->paths[0]));
    files->paths[files->count++] = write_temp(files->directory, name, text, length);
}

static void key_files_setup(struct key_files *files)
{
    memset(files, 0, sizeof(*files));
    strcpy(files->directory, "/tmp/wsbroker-keys-XXXXXX");
    assert_non_null(mkdtemp(files->directory));

    size_t length;
    char *rsa = public_key_pem("RSA", &length);
    key_file(files, "rsa.pem", rsa, length);
    free(rsa);
    char *ec = public_key_pem("EC", &length);
    key_file(files, "ec.pem", ec, length);
    free(ec);
    static const char garbage[] = "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n";
    key_file(files, "bad.pem", garbage, sizeof(garbage) - 1);
    key_file(files, "secret", "s3cret\n", 7);
    key_file(files, "newline-only", "\n", 1);
    key_file(files, "empty", "", 0);
    char *big = malloc(64 * 1024 + 1);
    assert_non_null(big);
    memset(big, 'k', 64 * 1024 + 1);
    key_file(files, "big", big, 64 * 1024 + 1);
    key_file(files, "limit", big, 64 * 1024);   /* exactly the bound: read */
    free(big);
}

static void key_files_teardown(struct key_files *files)
{
    for (size_t i = 0; i < files->count; i++) {
        assert_int_equal(unlink(files->paths[i]), 0);
        free(files->paths[i]);
    }
    assert_int_equal(rmdir(files->directory), 0);
}

static struct config *auth_parse(const struct key_files *files, const char *auth, char *error)
{
    char text[1024];
    snprintf(text, sizeof(text), LISTEN "auth = {\n%s\n};\n", auth);
    return config_parse(text, "t.conf", files->directory, error, CONFIG_ERROR_SIZE);
}

static struct config *auth_ok(const struct key_files *files, const char *auth)
{
    char error[CONFIG_ERROR_SIZE];
    struct config *config = auth_parse(files, auth, error);
    if (config == NULL)
        fail_msg("rejected: %s\n%s", error, auth);
    assert_non_null(config->auth.verifier);
    return config;
}

/* Exact message, or with prefix_only its start plus some reason. */
static void auth_expect(const struct key_files *files, const char *auth, const char *expected,
                        bool prefix_only)
{
    char error[CONFIG_ERROR_SIZE];
    struct config *config = auth_parse(files, auth, error);
    if (config != NULL) {
        config_release(config);
        fail_msg("accepted, wanted \"%s\":\n%s", expected, auth);
    }
    if (!prefix_only)
        assert_string_equal(error, expected);
    else if (strncmp(error, expected, strlen(expected)) != 0 || strlen(error) == strlen(expected))
        fail_msg("\"%s\" does not start with \"%s\" and a reason", error, expected);
}

static void test_auth_secrets(void **state)
{
    struct key_files files;
    key_files_setup(&files);

    struct config *config = auth_ok(&files, " algorithm = \"HS256\"; secret = \"k\";");
    assert_int_equal(config->auth.algorithm, AUTH_HS256);
    assert_true(config->auth.required);
    assert_null(config->auth.cookie);
    config_release(config);

    config = auth_ok(&files, " algorithm = \"HS256\"; secret_file = \"secret\"; required = false;");
    assert_false(config->auth.required);
    config_release(config);
    char absolute[256];
    snprintf(absolute, sizeof(absolute), " algorithm = \"HS256\"; secret_file = \"%s/secret\";",
             files.directory);
    config_release(auth_ok(&files, absolute));
    /* 64 KiB exactly is read, one byte more is not */
    config_release(auth_ok(&files, " algorithm = \"HS256\"; secret_file = \"limit\";"));

    auth_expect(&files, " algorithm = \"HS256\";\n secret = \"\";", "t.conf:4: auth.secret: ",
                true);
    /* the one trailing newline is not part of the secret, so nothing is left */
    auth_expect(&files, " algorithm = \"HS256\";\n secret_file = \"newline-only\";",
                "t.conf:4: auth.secret_file: ", true);
    auth_expect(&files, " algorithm = \"HS256\";\n secret_file = \"empty\";",
                "t.conf:4: auth.secret_file: ", true);

    char expected[CONFIG_ERROR_SIZE];
    snprintf(expected, sizeof(expected),
             "t.conf:4: auth.secret_file: cannot read %s/nope: No such file or directory",
             files.directory);
    auth_expect(&files, " algorithm = \"HS256\";\n secret_file = \"nope\";", expected, false);
    snprintf(expected, sizeof(expected),
             "t.conf:4: auth.secret_file: %s/big is larger than 65536 bytes", files.directory);
    auth_expect(&files, " algorithm = \"HS256\";\n secret_file = \"big\";", expected, false);
    auth_expect(&files, " algorithm = \"HS256\";\n secret_file = \"\";",
                "t.conf:4: auth.secret_file: no file name", false);

    /* exactly one of secret and secret_file; no public key for HS256 */
    auth_expect(&files, " algorithm = \"HS256\";\n secret = \"k\";\n secret_file = \"secret\";",
                "t.conf:5: 'auth.secret' and 'auth.secret_file' exclude each other", false);
    auth_expect(&files, " algorithm = \"HS256\";\n secret_file = \"secret\";\n secret = \"k\";",
                "t.conf:4: 'auth.secret' and 'auth.secret_file' exclude each other", false);
    auth_expect(&files, " algorithm = \"HS256\";\n required = true;",
                "t.conf:2: 'auth.secret' or 'auth.secret_file' is required for HS256", false);
    auth_expect(&files, " algorithm = \"HS256\"; secret = \"k\";\n public_key_file = \"rsa.pem\";",
                "t.conf:4: 'auth.public_key_file' applies only to RS256 and ES256", false);
    auth_expect(&files, " secret = \"k\";", "t.conf:2: 'auth.algorithm' is required", false);
    key_files_teardown(&files);
}

static void test_auth_public_keys(void **state)
{
    struct key_files files;
    key_files_setup(&files);

    struct config *config = auth_ok(&files, " algorithm = \"RS256\"; public_key_file = \"rsa.pem\";");
    assert_int_equal(config->auth.algorithm, AUTH_RS256);
    assert_true(config->auth.required);
    config_release(config);
    config = auth_ok(&files, " algorithm = \"ES256\"; public_key_file = \"ec.pem\";\n"
                             " cookie = \"session\"; required = false;");
    assert_int_equal(config->auth.algorithm, AUTH_ES256);
    assert_string_equal(config->auth.cookie, "session");
    assert_false(config->auth.required);
    config_release(config);

    auth_expect(&files, " algorithm = \"RS256\";\n public_key_file = \"bad.pem\";",
                "t.conf:4: auth.public_key_file: ", true);
    auth_expect(&files, " algorithm = \"RS256\";\n public_key_file = \"secret\";",
                "t.conf:4: auth.public_key_file: ", true);
    auth_expect(&files, " algorithm = \"ES256\";\n public_key_file = \"empty\";",
                "t.conf:4: auth.public_key_file: ", true);
    /* a key of the other type is as unusable as no key */
    auth_expect(&files, " algorithm = \"ES256\";\n public_key_file = \"rsa.pem\";",
                "t.conf:4: auth.public_key_file: ", true);
    auth_expect(&files, " algorithm = \"RS256\";\n public_key_file = \"ec.pem\";",
                "t.conf:4: auth.public_key_file: ", true);
    char expected[CONFIG_ERROR_SIZE];
    snprintf(expected, sizeof(expected),
             "t.conf:4: auth.public_key_file: cannot read %s/jwt.pem: No such file or directory",
             files.directory);
    auth_expect(&files, " algorithm = \"RS256\";\n public_key_file = \"jwt.pem\";", expected, false);
    snprintf(expected, sizeof(expected),
             "t.conf:4: auth.public_key_file: %s/big is larger than 65536 bytes", files.directory);
    auth_expect(&files, " algorithm = \"ES256\";\n public_key_file = \"big\";", expected, false);

    auth_expect(&files, " algorithm = \"RS256\";\n cookie = \"c\";",
                "t.conf:2: 'auth.public_key_file' is required for RS256", false);
    auth_expect(&files, " algorithm = \"ES256\";", "t.conf:2: 'auth.public_key_file' is required "
                "for ES256", false);
    auth_expect(&files, " algorithm = \"RS256\"; public_key_file = \"rsa.pem\";\n secret = \"k\";",
                "t.conf:4: 'auth.secret' applies only to HS256", false);
    auth_expect(&files, " algorithm = \"ES256\"; public_key_file = \"ec.pem\";\n"
                        " secret_file = \"secret\";",
                "t.conf:4: 'auth.secret_file' applies only to HS256", false);
    key_files_teardown(&files);
}

static void test_auth_cookie(void **state)
{
    struct config *config =
        parse_ok(LISTEN "auth = { algorithm = \"HS256\"; secret = \"k\"; cookie = \"\"; };\n");
    assert_null(config->auth.cookie);   /* "" is none */
    config_release(config);
    config = parse_ok(LISTEN "auth = { algorithm = \"HS256\"; secret = \"k\";\n"
                             " cookie = \"__Host-token.v1!#$%&'*+^_`|~\"; };\n");
    assert_string_equal(config->auth.cookie, "__Host-token.v1!#$%&'*+^_`|~");
    config_release(config);

    static const char *const bad[] = { "a b", "a;b", "a=b", "(x)", "x,y", "caf\xc3\xa9", "\\t" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[256], expected[CONFIG_ERROR_SIZE];
        snprintf(text, sizeof(text),
                 LISTEN "auth = { algorithm = \"HS256\"; secret = \"k\";\n cookie = \"%s\"; };\n",
                 bad[i]);
        snprintf(expected, sizeof(expected),
                 "t.conf:3: 'auth.cookie': \"%s\" is not a cookie name (an HTTP token)",
                 strcmp(bad[i], "\\t") == 0 ? "\t" : bad[i]);
        expect_error(text, expected);
    }
}

/* Key files resolve against the directory of the file config_load read. */
static void test_auth_load_relative(void **state)
{
    struct key_files files;
    char error[CONFIG_ERROR_SIZE];
    key_files_setup(&files);

    static const char text[] = LISTEN "auth = { algorithm = \"RS256\"; public_key_file = \"rsa.pem\"; };\n";
    key_file(&files, "rsa.conf", text, sizeof(text) - 1);
    struct config *config = config_load(files.paths[files.count - 1], error, sizeof(error));
    if (config == NULL)
        fail_msg("%s", error);
    assert_non_null(config->auth.verifier);
    config_release(config);

    /* the same file parsed with another base directory finds no key */
    config = config_parse(text, "t.conf", "/nonexistent", error, sizeof(error));
    assert_null(config);
    assert_string_equal(error, "t.conf:2: auth.public_key_file: cannot read "
                               "/nonexistent/rsa.pem: No such file or directory");
    key_files_teardown(&files);
}

/* ---- tls: a certificate and keys generated once for the run ---- */

struct tls_files {
    char directory[64];
    char *paths[8];
    size_t count;
    char subdirectory[128];
};

static struct tls_files tls_files;

static void tls_file(const char *name, const char *text, size_t length)
{
    assert_true(tls_files.count < sizeof(tls_files.paths) / sizeof(tls_files.paths[0]));
    tls_files.paths[tls_files.count++] = write_temp(tls_files.directory, name, text, length);
}

/* PEM text of what write writes into a memory BIO. */
static char *pem_text(BIO *bio, size_t *length)
{
    char *data = NULL;
    long size = BIO_get_mem_data(bio, &data);
    assert_true(size > 0);
    char *text = malloc((size_t)size + 1);
    assert_non_null(text);
    memcpy(text, data, (size_t)size);
    text[size] = '\0';
    *length = (size_t)size;
    BIO_free(bio);
    return text;
}

static char *private_key_pem(EVP_PKEY *key, size_t *length)
{
    BIO *bio = BIO_new(BIO_s_mem());
    assert_non_null(bio);
    assert_int_equal(PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL), 1);
    return pem_text(bio, length);
}

/* A self-signed certificate for key, valid from an hour ago for a day. */
static char *certificate_pem(EVP_PKEY *key, size_t *length)
{
    X509 *certificate = X509_new();
    assert_non_null(certificate);
    assert_int_equal(X509_set_version(certificate, 2), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(certificate), 1), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(certificate), -3600));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(certificate), 86400));
    assert_int_equal(X509_set_pubkey(certificate, key), 1);
    X509_NAME *name = X509_get_subject_name(certificate);
    assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                                (const unsigned char *)"localhost", -1, -1, 0),
                     1);
    assert_int_equal(X509_set_issuer_name(certificate, name), 1);
    assert_true(X509_sign(certificate, key, EVP_sha256()) > 0);
    BIO *bio = BIO_new(BIO_s_mem());
    assert_non_null(bio);
    assert_int_equal(PEM_write_bio_X509(bio, certificate), 1);
    X509_free(certificate);
    return pem_text(bio, length);
}

/* cert.pem and key.pem belong together; other-key.pem is a second key;
 * garbage.pem holds no PEM; dir is a directory. */
static int tls_files_setup(void **state)
{
    memset(&tls_files, 0, sizeof(tls_files));
    strcpy(tls_files.directory, "/tmp/wsbroker-tls-XXXXXX");
    assert_non_null(mkdtemp(tls_files.directory));
    size_t length;
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    assert_non_null(key);
    char *text = certificate_pem(key, &length);
    tls_file("cert.pem", text, length);
    free(text);
    text = private_key_pem(key, &length);
    tls_file("key.pem", text, length);
    free(text);
    EVP_PKEY_free(key);
    key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    assert_non_null(key);
    text = private_key_pem(key, &length);
    tls_file("other-key.pem", text, length);
    free(text);
    EVP_PKEY_free(key);
    tls_file("garbage.pem", "not PEM\n", 8);
    snprintf(tls_files.subdirectory, sizeof(tls_files.subdirectory), "%s/dir",
             tls_files.directory);
    assert_int_equal(mkdir(tls_files.subdirectory, 0700), 0);
    return 0;
}

static int tls_files_teardown(void **state)
{
    for (size_t i = 0; i < tls_files.count; i++) {
        assert_int_equal(unlink(tls_files.paths[i]), 0);
        free(tls_files.paths[i]);
    }
    assert_int_equal(rmdir(tls_files.subdirectory), 0);
    assert_int_equal(rmdir(tls_files.directory), 0);
    return 0;
}

/* A TLS listener on line 1 whose tls group opens on line 2; body starts on
 * line 3. Relative names resolve against the generated files. */
static struct config *tls_parse(const char *body, char *error)
{
    char text[2048];
    snprintf(text, sizeof(text),
             "listen = ( { address = \"::1\"; port = 8443;\n tls = {\n%s\n}; } );\n", body);
    return config_parse(text, "t.conf", tls_files.directory, error, CONFIG_ERROR_SIZE);
}

static struct config *tls_ok(const char *body)
{
    char error[CONFIG_ERROR_SIZE];
    struct config *config = tls_parse(body, error);
    if (config == NULL)
        fail_msg("rejected: %s\n%s", error, body);
    assert_non_null(config->listeners[0].tls);
    return config;
}

/* expected with its first "%s" replaced by the generated files' directory. */
static void tls_wanted(char *out, size_t size, const char *expected)
{
    const char *mark = strstr(expected, "%s");
    if (mark == NULL)
        snprintf(out, size, "%s", expected);
    else
        snprintf(out, size, "%.*s%s%s", (int)(mark - expected), expected, tls_files.directory,
                 mark + 2);
}

/* With prefix_only the message must start with expected and go on. */
static void tls_expect(const char *body, const char *expected, bool prefix_only)
{
    char error[CONFIG_ERROR_SIZE], wanted[CONFIG_ERROR_SIZE];
    tls_wanted(wanted, sizeof(wanted), expected);
    struct config *config = tls_parse(body, error);
    if (config != NULL) {
        config_release(config);
        fail_msg("accepted, wanted \"%s\":\n%s", wanted, body);
    }
    if (!prefix_only)
        assert_string_equal(error, wanted);
    else if (strncmp(error, wanted, strlen(wanted)) != 0 || strlen(error) == strlen(wanted))
        fail_msg("\"%s\" does not start with \"%s\" and a reason", error, wanted);
}

static void assert_in_directory(const char *path, const char *name)
{
    char expected[256];
    snprintf(expected, sizeof(expected), "%s/%s", tls_files.directory, name);
    assert_string_equal(path, expected);
}

static void test_tls_listener(void **state)
{
    struct config *config = tls_ok(" cert = \"cert.pem\"; key = \"key.pem\";");
    const struct tls_config *tls = config->listeners[0].tls;
    assert_in_directory(tls->cert_file, "cert.pem");
    assert_in_directory(tls->key_file, "key.pem");
    assert_int_equal(tls->min_version, TLS1_2_VERSION);
    assert_null(tls->ciphers);
    assert_null(tls->ciphersuites);
    assert_false(tls->verify_client);
    assert_null(tls->ca_file);
    assert_string_equal(config->listeners[0].address, "::1");
    assert_int_equal(config->listeners[0].port, 8443);
    assert_null(config->listeners[0].path);
    config_release(config);

    char body[512];
    snprintf(body, sizeof(body), " cert = \"%s/cert.pem\";\n key = \"%s/key.pem\";\n"
             " min_version = \"TLSv1.3\"; ciphers = \"ECDHE+AESGCM:!aNULL\";\n"
             " ciphersuites = \"TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256\";\n"
             " verify_client = true; ca_file = \"cert.pem\";", tls_files.directory,
             tls_files.directory);
    config = tls_ok(body);
    tls = config->listeners[0].tls;
    assert_in_directory(tls->cert_file, "cert.pem");
    assert_in_directory(tls->key_file, "key.pem");
    assert_int_equal(tls->min_version, TLS1_3_VERSION);
    assert_string_equal(tls->ciphers, "ECDHE+AESGCM:!aNULL");
    assert_string_equal(tls->ciphersuites, "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256");
    assert_true(tls->verify_client);
    assert_in_directory(tls->ca_file, "cert.pem");
    config_release(config);

    /* "" turns TLS 1.3 off, which TLS 1.2 survives */
    config = tls_ok(" cert = \"cert.pem\"; key = \"key.pem\"; ciphersuites = \"\";\n"
                    " min_version = \"TLSv1.2\"; verify_client = false;");
    assert_string_equal(config->listeners[0].tls->ciphersuites, "");
    config_release(config);

    /* plain and TLS listeners side by side, and a Unix socket */
    char error[CONFIG_ERROR_SIZE];
    config = config_parse("listen = ( { address = \"::\"; port = 80; },\n"
                          " { address = \"::\"; port = 443; tls = { cert = \"cert.pem\";"
                          " key = \"key.pem\"; }; },\n { path = \"w.sock\"; } );\n",
                          "t.conf", tls_files.directory, error, sizeof(error));
    if (config == NULL)
        fail_msg("%s", error);
    assert_null(config->listeners[0].tls);
    assert_non_null(config->listeners[1].tls);
    assert_null(config->listeners[2].tls);
    assert_in_directory(config->listeners[2].path, "w.sock");
    config_release(config);
}

static void test_tls_files(void **state)
{
    tls_expect(" cert = \"cert.pem\";", "t.conf:2: 'listen[0].tls.key' is required", false);
    tls_expect(" key = \"key.pem\";", "t.conf:2: 'listen[0].tls.cert' is required", false);
    tls_expect("", "t.conf:2: 'listen[0].tls.cert' is required", false);
    tls_expect(" cert = \"nope.pem\";\n key = \"key.pem\";",
               "t.conf:3: 'listen[0].tls.cert': cannot read %s/nope.pem: No such file or directory",
               false);
    tls_expect(" cert = \"cert.pem\";\n key = \"nope.pem\";",
               "t.conf:4: 'listen[0].tls.key': cannot read %s/nope.pem: No such file or directory",
               false);
    tls_expect(" cert = \"cert.pem\"; key = \"key.pem\"; verify_client = true;\n"
               " ca_file = \"nope.pem\";",
               "t.conf:4: 'listen[0].tls.ca_file': cannot read %s/nope.pem: No such file or "
               "directory", false);
    tls_expect(" cert = \"dir\";\n key = \"key.pem\";",
               "t.conf:3: 'listen[0].tls.cert': cannot read %s/dir: Is a directory", false);
    tls_expect(" cert = \"/dev/null\";\n key = \"key.pem\";",
               "t.conf:3: 'listen[0].tls.cert': cannot read /dev/null: not a regular file", false);
    tls_expect(" cert = \"cert.pem\";\n key = \"\";", "t.conf:4: 'listen[0].tls.key': no file name",
               false);
    tls_expect(" cert = \"cert.pem\";\n key = 5;", "t.conf:4: 'listen[0].tls.key' must be a string",
               false);

    /* root reads any file: only another user can see a permission error */
    if (geteuid() != 0) {
        char path[256];
        snprintf(path, sizeof(path), "%s/key.pem", tls_files.directory);
        assert_int_equal(chmod(path, 0), 0);
        tls_expect(" cert = \"cert.pem\";\n key = \"key.pem\";",
                   "t.conf:4: 'listen[0].tls.key': cannot read %s/key.pem: Permission denied",
                   false);
        assert_int_equal(chmod(path, 0600), 0);
    }

    /* readable, but not what they should be: found by building a context */
    tls_expect(" cert = \"cert.pem\";\n key = \"other-key.pem\";",
               "t.conf:2: 'listen[0].tls': certificate and key do not match", false);
    tls_expect(" cert = \"cert.pem\";\n key = \"garbage.pem\";",
               "t.conf:2: 'listen[0].tls': cannot load private key %s/garbage.pem: no PEM private "
               "key in it (", true);
    tls_expect(" cert = \"garbage.pem\";\n key = \"key.pem\";",
               "t.conf:2: 'listen[0].tls': cannot load certificate chain %s/garbage.pem: no start "
               "line", false);
    tls_expect(" cert = \"key.pem\";\n key = \"key.pem\";",
               "t.conf:2: 'listen[0].tls': cannot load certificate chain %s/key.pem: ", true);
    tls_expect(" cert = \"cert.pem\"; key = \"key.pem\"; verify_client = true;\n"
               " ca_file = \"garbage.pem\";",
               "t.conf:2: 'listen[0].tls': cannot load CA file %s/garbage.pem: no certificate or "
               "crl found", false);
}

static void test_tls_options(void **state)
{
    static const char *const bad_versions[] = { "\"TLSv1.1\"", "\"tlsv1.2\"", "\"1.2\"", "1.2",
                                                "12", "\"TLSv1.2 \"", "true" };
    for (size_t i = 0; i < sizeof(bad_versions) / sizeof(bad_versions[0]); i++) {
        char body[256];
        snprintf(body, sizeof(body), " cert = \"cert.pem\"; key = \"key.pem\";\n min_version = %s;",
                 bad_versions[i]);
        tls_expect(body, "t.conf:4: 'listen[0].tls.min_version' must be one of TLSv1.2, TLSv1.3",
                   false);
    }
    tls_expect(" cert = \"cert.pem\"; key = \"key.pem\";\n ciphers = \"BOGUS\";",
               "t.conf:4: 'listen[0].tls.ciphers': \"BOGUS\" selects no cipher: no cipher match",
               false);
    tls_expect(" cert = \"cert.pem\"; key = \"key.pem\";\n ciphers = \"\";",
               "t.conf:4: 'listen[0].tls.ciphers': \"\" selects no cipher: no cipher match", false);
    tls_expect(" cert = \"cert.pem\"; key = \"key.pem\";\n ciphers = [ \"HIGH\" ];",
               "t.conf:4: 'listen[0].tls.ciphers' must be a string", false);
    tls_expect(" cert = \"cert.pem\"; key = \"key.pem\";\n"
               " ciphersuites = \"TLS_AES_128_GCM_SHA256:TLS_TYPO\";",
               "t.conf:4: 'listen[0].tls.ciphersuites': unknown TLS 1.3 ciphersuite \"TLS_TYPO\"",
               false);
    tls_expect(" cert = \"cert.pem\"; key = \"key.pem\";\n"
               " ciphersuites = \"TLS_AES_128_GCM_SHA256:\";",
               "t.conf:4: 'listen[0].tls.ciphersuites': empty name in the list", false);
    tls_expect(" cert = \"cert.pem\"; key = \"key.pem\"; min_version = \"TLSv1.3\";\n"
               " ciphersuites = \"\";",
               "t.conf:4: 'listen[0].tls.ciphersuites' is empty, which leaves TLS 1.3, the only "
               "version 'listen[0].tls.min_version' allows, without ciphers", false);
    tls_expect(" cert = \"cert.pem\"; key = \"key.pem\";\n verify_client = true;",
               "t.conf:4: 'listen[0].tls.ca_file' is required when 'listen[0].tls.verify_client' "
               "is true", false);
    tls_expect(" cert = \"cert.pem\"; key = \"key.pem\";\n ca_file = \"cert.pem\";",
               "t.conf:4: 'listen[0].tls.ca_file' applies only when "
               "'listen[0].tls.verify_client' is true", false);
    tls_expect(" cert = \"cert.pem\"; key = \"key.pem\"; verify_client = false;\n"
               " ca_file = \"cert.pem\";",
               "t.conf:4: 'listen[0].tls.ca_file' applies only when "
               "'listen[0].tls.verify_client' is true", false);
    tls_expect(" cert = \"cert.pem\"; key = \"key.pem\";\n verify_client = \"yes\";",
               "t.conf:4: 'listen[0].tls.verify_client' must be true or false", false);
}

static void test_tls_listener_errors(void **state)
{
    char error[CONFIG_ERROR_SIZE];

    assert_null(config_parse("listen = ( { path = \"w.sock\";\n"
                             " tls = { cert = \"cert.pem\"; key = \"key.pem\"; }; } );\n",
                             "t.conf", tls_files.directory, error, sizeof(error)));
    assert_string_equal(error, "t.conf:2: 'listen[0].tls' applies only to TCP listeners "
                               "(address and port)");
    assert_null(config_parse("listen = ( { address = \"::\"; port = 443;\n"
                             " tls = { cert = \"cert.pem\"; key = \"key.pem\"; }; },\n"
                             " { address = \"::\"; port = 443; } );\n",
                             "t.conf", tls_files.directory, error, sizeof(error)));
    assert_string_equal(error, "t.conf:3: 'listen[1]' repeats listen[0] (:: port 443)");
    /* a TLS group built before a later error is freed (ASan checks) */
    assert_null(config_parse("listen = ( { address = \"::\"; port = 443;\n"
                             " tls = { cert = \"cert.pem\"; key = \"key.pem\"; verify_client = true;"
                             " ca_file = \"cert.pem\"; ciphers = \"HIGH\"; ciphersuites ="
                             " \"TLS_AES_128_GCM_SHA256\"; }; },\n"
                             " { address = \"x\"; port = 1; } );\n",
                             "t.conf", tls_files.directory, error, sizeof(error)));
    assert_string_equal(error, "t.conf:3: 'listen[1].address' must be a numeric IPv4 or IPv6 "
                               "address");
    assert_null(config_parse("listen = ( { address = \"::\"; port = 443;\n"
                             " tls = { cert = \"cert.pem\"; ciphers = \"HIGH\";\n"
                             " min_version = \"SSLv3\"; }; } );\n",
                             "t.conf", tls_files.directory, error, sizeof(error)));
    assert_string_equal(error, "t.conf:3: 'listen[0].tls.min_version' must be one of TLSv1.2, "
                               "TLSv1.3");
}

/* Certificate files resolve against the directory of the file config_load
 * read, as `wsbroker -t -c FILE` would check them. */
static void test_tls_load_relative(void **state)
{
    static const char text[] = "listen = ( { address = \"127.0.0.1\"; port = 8443;\n"
                                "  tls = { cert = \"cert.pem\"; key = \"key.pem\"; }; } );\n";
    static const char mismatch[] =
        "listen = ( { address = \"127.0.0.1\"; port = 8443;\n"
        "  tls = { cert = \"cert.pem\"; key = \"other-key.pem\"; }; } );\n";
    char error[CONFIG_ERROR_SIZE], expected[CONFIG_ERROR_SIZE];

    char *path = write_temp(tls_files.directory, "tls.conf", text, sizeof(text) - 1);
    struct config *config = config_load(path, error, sizeof(error));
    if (config == NULL)
        fail_msg("%s", error);
    assert_in_directory(config->listeners[0].tls->cert_file, "cert.pem");
    config_release(config);
    assert_int_equal(unlink(path), 0);
    free(path);

    path = write_temp(tls_files.directory, "mismatch.conf", mismatch, sizeof(mismatch) - 1);
    assert_null(config_load(path, error, sizeof(error)));
    snprintf(expected, sizeof(expected), "%s:2: 'listen[0].tls': certificate and key do not match",
             path);
    assert_string_equal(error, expected);
    assert_int_equal(unlink(path), 0);
    free(path);
}

/* ---- compression, proxy, user ---- */

static void test_compression(void **state)
{
    struct config *config =
        parse_ok(LISTEN "websocket = { compression = { enabled = false; }; };\n");
    assert_false(config->websocket.compression.enabled);
    assert_int_equal(config->websocket.compression.level, 1);   /* the rest keep defaults */
    assert_int_equal(config->websocket.compression.min_size, 256);
    config_release(config);
    config = parse_ok(LISTEN "websocket = { compression = {\n"
                             " min_size = 2147483648; level = 0; }; };\n");
    assert_true(config->websocket.compression.min_size == (size_t)2147483648u);
    assert_int_equal(config->websocket.compression.level, 0);
    config_release(config);
    expect_error(LISTEN "websocket = { compression = {\n min_size = 4294967552; }; };\n",
                 "t.conf:3: 'websocket.compression.min_size' must be between 0 and 2147483648");
}

static void test_proxy_trusted(void **state)
{
    struct config *config = parse_ok(LISTEN "proxy = { trusted = [ ]; };\n");
    assert_int_equal(config->proxy.trusted_count, 0);   /* nobody's headers are believed */
    assert_null(config->proxy.trusted);
    config_release(config);
    config = parse_ok(LISTEN "proxy = { trusted = ( \"192.0.2.10\", \"10.0.0.0/8\",\n"
                             " \"2001:db8::/32\", \"::ffff:0:0/96\" ); };\n");
    assert_int_equal(config->proxy.trusted_count, 4);
    assert_range(&config->proxy.trusted[0], AF_INET, "192.0.2.10", 32);
    assert_range(&config->proxy.trusted[1], AF_INET, "10.0.0.0", 8);
    assert_range(&config->proxy.trusted[2], AF_INET6, "2001:db8::", 32);
    assert_range(&config->proxy.trusted[3], AF_INET6, "::ffff:0:0", 96);
    config_release(config);

    static const char *const bad[] = { "", "proxy.local", "10.0.0.1/8", "::1/129", "1.2.3.4/",
                                       "*", "10.0.0.0/8 " };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), LISTEN "proxy = {\n trusted = [ \"::1\",\n \"%s\" ];\n};\n",
                 bad[i]);
        expect_error(text, "t.conf:4: 'proxy.trusted[1]' is not an address or CIDR range");
    }
}

static void test_user(void **state)
{
    struct config *config = parse_ok(LISTEN "user = \"root\";\n");
    assert_string_equal(config->user, "root");
    config_release(config);
    expect_error(LISTEN "log_level = \"info\";\nuser = \"no-such-user-xyz\";\n",
                 "t.conf:3: 'user': no user named \"no-such-user-xyz\"");
    expect_error(LISTEN "user = \"\";\n", "t.conf:2: 'user': no user named \"\"");
    expect_error(LISTEN "user = \"root \";\n", "t.conf:2: 'user': no user named \"root \"");
}

static void test_cluster_group(void **state)
{
    struct config *config = parse_ok(LISTEN);
    assert_false(config->cluster.enabled);     /* absent: standalone */
    config_release(config);
#ifdef HAVE_REDIS
    config = parse_ok(LISTEN "cluster = { engine = \"redis\"; url = \"redis://:pw@10.0.0.5:6380/2\"; };\n");
    assert_true(config->cluster.enabled);
    assert_string_equal(config->cluster.prefix, "wsbroker:");
    assert_string_equal(config->cluster.redis.host, "10.0.0.5");
    assert_int_equal(config->cluster.redis.port, 6380);
    assert_int_equal(config->cluster.redis.db, 2);
    assert_string_equal(config->cluster.redis.password, "pw");
    config_release(config);
    expect_error(LISTEN "cluster = {\n engine = \"etcd\";\n url = \"redis://h\";\n};\n",
                 "t.conf:3: 'cluster.engine' must be \"redis\", not \"etcd\"");
    expect_error(LISTEN "cluster = {\n engine = \"redis\";\n url = \"redis://h:0\";\n};\n",
                 "t.conf:4: 'cluster.url': the url's port must be 1 to 65535");
    expect_error(LISTEN "cluster = {\n engine = \"redis\";\n url = \"redis://h\";\n"
                 " prefix = \"a b\";\n};\n",
                 "t.conf:5: 'cluster.prefix' must be 1 to 64 printable ASCII characters without spaces");
    expect_error(LISTEN "cluster = { engine = \"redis\"; };\n", "t.conf:2: 'cluster.url' is required");
#else
    expect_error(LISTEN "cluster = { engine = \"redis\"; url = \"redis://h\"; };\n",
                 "t.conf:2: cluster: this wsbroker was built without Redis support "
                 "(./configure --with-redis)");
#endif
}

static void test_shipped_config(void **state)
{
    const char *srcdir = getenv("WSBROKER_SRCDIR");
    char path[4096], error[CONFIG_ERROR_SIZE];
    snprintf(path, sizeof(path), "%s/conf/wsbroker.conf", srcdir != NULL ? srcdir : ".");

    struct config *config = config_load(path, error, sizeof(error));
    if (config == NULL)
        fail_msg("%s", error);
    assert_int_equal(config->listener_count, 2);
    assert_string_equal(config->listeners[0].address, "0.0.0.0");
    assert_int_equal(config->listeners[0].port, 8080);
    assert_string_equal(config->listeners[1].address, "::");
    assert_int_equal(config->listeners[1].port, 8080);
    for (size_t i = 0; i < config->listener_count; i++) {
        assert_null(config->listeners[i].tls);   /* runs as is: no certificate needed */
        assert_null(config->listeners[i].path);
    }
    assert_int_equal(config->route_count, 3);
    assert_string_equal(config->routes[0].path, "/chat/:room");
    assert_int_equal(config->routes[0].mode, ROUTE_MODE_BROADCAST);
    assert_string_equal(config->routes[0].channel, "room:{room}");
    assert_true(config->routes[0].echo_self);
    assert_false(config->routes[0].presence_events);
    assert_string_equal(config->routes[1].path, "/ws");
    assert_int_equal(config->routes[1].mode, ROUTE_MODE_PUBSUB);
    assert_true(config->routes[1].echo_self);
    assert_string_equal(config->routes[2].path, "/echo");
    assert_int_equal(config->routes[2].mode, ROUTE_MODE_ECHO);
    assert_int_equal(config->channel_rule_count, 1);
    const struct channel_rule *rule = config_channel_rule(config, "room:lobby");
    assert_ptr_equal(rule, &config->channel_rules[0]);
    assert_string_equal(rule->match, "room:*");
    assert_int_equal(rule->history, 50);
    assert_int_equal(rule->history_ttl, 3600);
    assert_true(rule->presence);
    assert_int_equal(rule->publish, PUBLISH_MEMBERS);
    assert_int_equal(config->limits.max_subscriptions, 256);
    assert_null(config->http.api_token);   /* the API is off until a token is set */
    assert_int_equal(config->http.metrics_allow_count, 2);
    assert_range(&config->http.metrics_allow[0], AF_INET, "127.0.0.0", 8);
    assert_range(&config->http.metrics_allow[1], AF_INET6, "::1", 128);
    assert_null(config->auth.verifier);
    assert_non_null(config->http.static_root);
    assert_true(config->http.static_root[0] == '/');
    static const char suffix[] = "/conf/../www";
    size_t length = strlen(config->http.static_root);
    assert_true(length >= sizeof(suffix) - 1);
    assert_string_equal(config->http.static_root + length - (sizeof(suffix) - 1), suffix);
    assert_int_equal(config->websocket.ping_interval, 25);
    assert_true(config->websocket.compression.enabled);
    assert_int_equal(config->proxy.trusted_count, 2);
    assert_null(config->user);
    assert_int_equal(config->log_level, LOG_LEVEL_INFO);
    config_release(config);
}

/* Every commented-out setting of the sample is valid as written: with all
 * of them uncommented (and a key file where the auth example expects one)
 * the file still loads, and the defaults it states are the real ones. The
 * example user "wsbroker" may not exist here, so root stands in for it. */
static void test_shipped_config_examples(void **state)
{
    const char *srcdir = getenv("WSBROKER_SRCDIR");
    char path[4096], error[CONFIG_ERROR_SIZE];
    snprintf(path, sizeof(path), "%s/conf/wsbroker.conf", srcdir != NULL ? srcdir : ".");
    FILE *in = fopen(path, "r");
    assert_non_null(in);

    regex_t setting;
    regmatch_t parts[3];
    assert_int_equal(regcomp(&setting, "^([ ]*)# ([ ]*([a-z_]+ = .*|\\};)\n)$", REG_EXTENDED), 0);
    char *text = NULL;
    size_t text_size = 0;
    FILE *out = open_memstream(&text, &text_size);
    assert_non_null(out);
    char line[1024];
    size_t uncommented = 0;
    bool user_seen = false;
    bool in_cluster = false;   /* a build without Redis refuses the group */
    while (fgets(line, sizeof(line), in) != NULL) {
#ifndef HAVE_REDIS
        if (strcmp(line, "# cluster = {\n") == 0)
            in_cluster = true;
#endif
        if (in_cluster) {
            fputs(line, out);
            in_cluster = strcmp(line, "# };\n") != 0;
        } else if (strcmp(line, "# user = \"wsbroker\";\n") == 0) {
            fputs("user = \"root\";\n", out);
            user_seen = true;
            uncommented++;
        } else if (regexec(&setting, line, 3, parts, 0) == 0) {
            fprintf(out, "%.*s%s", (int)parts[1].rm_eo, line, line + parts[2].rm_so);
            uncommented++;
        } else {
            fputs(line, out);
        }
    }
    regfree(&setting);
    assert_int_equal(fclose(in), 0);
    assert_int_equal(fclose(out), 0);
    assert_true(user_seen);
    assert_true(uncommented >= 30);

    struct key_files files;
    key_files_setup(&files);
    key_file(&files, "wsbroker.conf", text, strlen(text));
    free(text);
    snprintf(path, sizeof(path), "%s/jwt.pem", files.directory);
    assert_int_equal(link(files.paths[0], path), 0);   /* rsa.pem */
    struct config *config = config_load(files.paths[files.count - 1], error, sizeof(error));
    assert_int_equal(unlink(path), 0);
    if (config == NULL)
        fail_msg("%s", error);

#ifdef HAVE_REDIS
    assert_true(config->cluster.enabled);
    assert_string_equal(config->cluster.prefix, "wsbroker:");
    assert_int_equal(config->cluster.redis.port, 6379);
#else
    assert_false(config->cluster.enabled);
#endif
    assert_int_equal(config->websocket.allowed_origin_count, 1);
    assert_int_equal(config->websocket.max_message_size, 1048576);
    assert_int_equal(config->websocket.ping_interval, 25);
    assert_int_equal(config->websocket.ping_timeout, 60);
    assert_int_equal(config->websocket.handshake_timeout, 10);
    assert_int_equal(config->websocket.close_timeout, 5);
    assert_true(config->websocket.compression.enabled);
    assert_int_equal(config->websocket.compression.level, 1);
    assert_int_equal(config->websocket.compression.min_size, 256);
    assert_int_equal(config->websocket.compression.memory_level, 8);
    assert_int_equal(config->websocket.compression.max_window_bits, 15);
    assert_int_equal(config->limits.max_connections, 100000);
    assert_int_equal(config->limits.outbound_queue_max, 4194304);
    assert_int_equal(config->limits.request_head_max, 8192);
    assert_int_equal(config->limits.max_subscriptions, 256);
    assert_int_equal(config->proxy.trusted_count, 2);
    assert_range(&config->proxy.trusted[0], AF_INET, "127.0.0.1", 32);
    assert_range(&config->proxy.trusted[1], AF_INET6, "::1", 128);
    assert_string_equal(config->user, "root");
    assert_non_null(config->http.api_token);
    assert_non_null(config->auth.verifier);
    assert_int_equal(config->auth.algorithm, AUTH_RS256);
    assert_null(config->auth.cookie);
    assert_true(config->auth.required);
    assert_int_equal(config->log_level, LOG_LEVEL_INFO);
    assert_int_equal(config->shutdown_timeout, 5);
    config_release(config);
    key_files_teardown(&files);
}

/* ---- lifetime and error buffer ---- */

static void test_refcount(void **state)
{
    struct config *config = parse_ok(LISTEN);
    assert_ptr_equal(config_retain(config), config);
    assert_int_equal(config->refcount, 2);
    config_release(config);
    assert_int_equal(config->refcount, 1);
    config_release(config);   /* freed: ASan reports a leak or double free */
    config_release(NULL);
    assert_null(config_retain(NULL));
}

static void test_error_buffer(void **state)
{
    char small[8];
    memset(small, 'x', sizeof(small));
    assert_null(config_parse("x = 1;", "t.conf", NULL, small, sizeof(small)));
    assert_string_equal(small, "t.conf:");
    assert_null(config_parse("x = 1;", "t.conf", NULL, NULL, 0));
    assert_null(config_parse(NULL, "t.conf", NULL, small, sizeof(small)));
    char tiny[1] = { 'x' };
    assert_null(config_load("/nonexistent", tiny, sizeof(tiny)));
    assert_int_equal(tiny[0], '\0');
}

/* Frees partially built values on every kind of failure (ASan checks). */
static void test_failure_frees(void **state)
{
    expect_error(LISTEN "websocket = { allowed_origins = [ \"*\", \"null\" ];\n"
                        " subprotocols = [ \"a\", \"b c\" ]; };\n",
                 "t.conf:3: 'websocket.subprotocols': \"b c\" is not an HTTP token");
    expect_error(LISTEN "routes = (\n { path = \"/a/:x\"; mode = \"broadcast\"; },\n"
                        " { path = \"/b\"; mode = \"broadcast\"; channel = \"b\"; },\n"
                        " { path = \"/a/:y\"; mode = \"echo\"; } );\n",
                 "t.conf:5: 'routes[2].path' is never reached: routes[0] '/a/:x' (line 3) "
                 "comes first and matches every path it does");
    expect_error("listen = ( { address = \"::\"; port = 1; },\n"
                 " { address = \"x\"; port = 2; } );\n",
                 "t.conf:2: 'listen[1].address' must be a numeric IPv4 or IPv6 address");
    /* a verifier, ranges, rules and tokens built before a later error */
    expect_error(LISTEN "auth = { algorithm = \"HS256\"; secret = \"k\"; cookie = \"c\"; };\n"
                        "http = { api_token = \"t\"; metrics_allow = [ \"::1\" ]; };\n"
                        "channels = ( { match = \"a\"; }, { match = \"b\"; } );\n"
                        "log_level = \"loud\";\n",
                 "t.conf:5: 'log_level' must be one of error, warn, info, debug");
    expect_error(LISTEN "channels = ( { match = \"a\"; },\n { match = \"b c\"; } );\n",
                 "t.conf:3: 'channels[1].match' must be 1 to 128 characters of "
                 "A-Z a-z 0-9 _ . : @ / - *");
    expect_error(LISTEN "http = { api_token = \"t\";\n metrics_allow = [ \"::1\", \"x\" ]; };\n",
                 "t.conf:3: 'http.metrics_allow[1]' is not an address or CIDR range");
    expect_error(LISTEN "auth = { algorithm = \"HS256\"; secret = \"k\";\n cookie = \"a b\"; };\n",
                 "t.conf:3: 'auth.cookie': \"a b\" is not a cookie name (an HTTP token)");
    expect_error(LISTEN "http = { metrics_allow = [ \"::1\" ]; };\n"
                        "auth = { algorithm = \"HS256\"; secret = \"k\"; };\n"
                        "http2 = { };\n",
                 "t.conf:4: unknown key 'http2'");
    expect_error("listen = ( { path = \"/run/a.sock\"; mode = \"0600\"; },\n"
                 " { path = \"b.sock\"; },\n { address = \"::\"; port = 1; mode = 1; } );\n",
                 "t.conf:3: 'listen[2].mode' applies only to Unix socket listeners (path)");
    expect_error(LISTEN "proxy = { trusted = [ \"10.0.0.0/8\" ]; };\nuser = \"root\";\n"
                        "websocket = { compression = { level = 5; }; };\nshutdown_timeout = 0;\n",
                 "t.conf:5: 'shutdown_timeout' must be between 1 and 3600");
    expect_error(LISTEN "user = \"root\";\nproxy = { trusted = [ \"10.0.0.0/8\",\n \"x\" ]; };\n",
                 "t.conf:4: 'proxy.trusted[1]' is not an address or CIDR range");
}

/* ---- log ---- */

static void test_log_level_parse(void **state)
{
    enum log_level level = LOG_LEVEL_DEBUG;
    assert_int_equal(log_level_parse("error", &level), 0);
    assert_int_equal(level, LOG_LEVEL_ERROR);
    assert_int_equal(log_level_parse("warn", &level), 0);
    assert_int_equal(level, LOG_LEVEL_WARN);
    assert_int_equal(log_level_parse("info", &level), 0);
    assert_int_equal(level, LOG_LEVEL_INFO);
    assert_int_equal(log_level_parse("debug", &level), 0);
    assert_int_equal(level, LOG_LEVEL_DEBUG);
    assert_int_equal(log_level_parse("warning", &level), -1);
    assert_int_equal(log_level_parse("INFO", &level), -1);
    assert_int_equal(log_level_parse("", &level), -1);
    assert_int_equal(log_level_parse(NULL, &level), -1);
    assert_int_equal(level, LOG_LEVEL_DEBUG);
}

/* Runs log calls with stderr sent to a temporary file; returns its text. */
static char *capture_stderr(void (*body)(void))
{
    char path[] = "/tmp/wsbroker-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fd, STDERR_FILENO) >= 0);
    body();
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    assert_int_equal(close(saved), 0);

    off_t size = lseek(fd, 0, SEEK_END);
    assert_true(size >= 0);
    char *text = calloc(1, (size_t)size + 1);
    assert_non_null(text);
    assert_int_equal(pread(fd, text, (size_t)size, 0), size);
    assert_int_equal(close(fd), 0);
    assert_int_equal(unlink(path), 0);
    return text;
}

static void log_lines_body(void)
{
    struct log log = { .level = LOG_LEVEL_INFO };
    errno = EAGAIN;
    log_info(&log, "open %s %s", "127.0.0.1:5000", "/chat/x");
    assert_int_equal(errno, EAGAIN);
    log_debug(&log, "not shown");
    log_error(&log, "bad\npath\x1b[31m");
    log_warn(NULL, "no log struct");
    log_debug(NULL, "not shown either");
}

static void assert_matches(const char *text, const char *pattern)
{
    regex_t regex;
    assert_int_equal(regcomp(&regex, pattern, REG_EXTENDED | REG_NOSUB), 0);
    int result = regexec(&regex, text, 0, NULL, 0);
    regfree(&regex);
    if (result != 0)
        fail_msg("\"%s\" does not match %s", text, pattern);
}

#define TIMESTAMP "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z"

static void test_log_lines(void **state)
{
    char *text = capture_stderr(log_lines_body);
    assert_matches(text, "^" TIMESTAMP " info open 127\\.0\\.0\\.1:5000 /chat/x\n"
                         TIMESTAMP " error bad\\\\x0apath\\\\x1b\\[31m\n"
                         TIMESTAMP " warn no log struct\n$");
    free(text);
}

static void log_long_body(void)
{
    struct log log = { .level = LOG_LEVEL_DEBUG };
    char message[5000];
    memset(message, 'a', sizeof(message) - 1);
    message[sizeof(message) - 1] = '\0';
    log_debug(&log, "%s", message);
}

static void test_log_long_line(void **state)
{
    char *text = capture_stderr(log_long_body);
    size_t length = strlen(text);
    assert_true(length > 2048 && length < 2200);
    assert_string_equal(text + length - 5, "a...\n");
    assert_non_null(strstr(text, "Z debug aaaa"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_empty_groups_keep_defaults),
        cmocka_unit_test(test_rate_and_memory_limits),
        cmocka_unit_test(test_every_key_set),
        cmocka_unit_test(test_integer_keys),
        cmocka_unit_test(test_integers_do_not_wrap),
        cmocka_unit_test(test_integer_spellings),
        cmocka_unit_test(test_type_errors),
        cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_listen),
        cmocka_unit_test(test_listen_errors),
        cmocka_unit_test(test_listen_unix),
        cmocka_unit_test(test_listen_unix_errors),
        cmocka_unit_test(test_ping_rules),
        cmocka_unit_test(test_origins),
        cmocka_unit_test(test_subprotocols),
        cmocka_unit_test(test_static_root),
        cmocka_unit_test(test_route_defaults),
        cmocka_unit_test(test_route_errors),
        cmocka_unit_test(test_route_patterns),
        cmocka_unit_test(test_pubsub_routes),
        cmocka_unit_test(test_channels),
        cmocka_unit_test(test_channel_rule_lookup),
        cmocka_unit_test(test_api_token),
        cmocka_unit_test(test_metrics_allow),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_load_size_limit),
        cmocka_unit_test(test_auth_secrets),
        cmocka_unit_test(test_auth_public_keys),
        cmocka_unit_test(test_auth_cookie),
        cmocka_unit_test(test_auth_load_relative),
        cmocka_unit_test(test_tls_listener),
        cmocka_unit_test(test_tls_files),
        cmocka_unit_test(test_tls_options),
        cmocka_unit_test(test_tls_listener_errors),
        cmocka_unit_test(test_tls_load_relative),
        cmocka_unit_test(test_compression),
        cmocka_unit_test(test_proxy_trusted),
        cmocka_unit_test(test_user),
        cmocka_unit_test(test_cluster_group),
        cmocka_unit_test(test_shipped_config),
        cmocka_unit_test(test_shipped_config_examples),
        cmocka_unit_test(test_refcount),
        cmocka_unit_test(test_error_buffer),
        cmocka_unit_test(test_failure_frees),
        cmocka_unit_test(test_log_level_parse),
        cmocka_unit_test(test_log_lines),
        cmocka_unit_test(test_log_long_line),
    };
    return cmocka_run_group_tests(tests, tls_files_setup, tls_files_teardown);
}
