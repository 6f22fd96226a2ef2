/* Unit tests for the config module (and the log module it names levels
 * from): defaults, every key's type and range errors with their exact
 * "FILE:LINE: message", unknown keys at every level, cross-key rules,
 * routes, path resolution, file reading and the shipped sample config. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

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

/* ---- defaults ---- */

static void test_defaults(void **state)
{
    struct config *config = parse_ok(LISTEN);

    assert_int_equal(config->refcount, 1);
    assert_string_equal(config->file, "t.conf");
    assert_int_equal(config->listener_count, 1);
    assert_string_equal(config->listeners[0].address, "127.0.0.1");
    assert_int_equal(config->listeners[0].port, 8080);
    assert_int_equal(config->websocket.allowed_origin_count, 0);
    assert_null(config->websocket.allowed_origins);
    assert_int_equal(config->websocket.subprotocol_count, 0);
    assert_null(config->websocket.subprotocols);
    assert_int_equal(config->websocket.max_message_size, 1048576);
    assert_int_equal(config->websocket.ping_interval, 25);
    assert_int_equal(config->websocket.ping_timeout, 60);
    assert_int_equal(config->websocket.handshake_timeout, 10);
    assert_int_equal(config->websocket.close_timeout, 5);
    assert_int_equal(config->limits.max_connections, 100000);
    assert_int_equal(config->limits.outbound_queue_max, 4194304);
    assert_int_equal(config->limits.request_head_max, 8192);
    assert_int_equal(config->route_count, 0);
    assert_null(config->routes);
    assert_null(config->http.static_root);
    assert_int_equal(config->log_level, LOG_LEVEL_INFO);
    assert_int_equal(config->shutdown_timeout, 5);
    config_release(config);
}

static void test_empty_groups_keep_defaults(void **state)
{
    struct config *config =
        parse_ok(LISTEN "websocket = { };\nlimits = { };\nhttp = { };\nroutes = ( );\n");
    assert_int_equal(config->websocket.ping_timeout, 60);
    assert_int_equal(config->limits.request_head_max, 8192);
    assert_null(config->http.static_root);
    assert_int_equal(config->route_count, 0);
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
        "};\n"
        "limits = { max_connections = 10000000; outbound_queue_max = 1099511627776;\n"
        "  request_head_max = 1048576; };\n"
        "http = { static_root = \"/srv/www\"; };\n"
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
    assert_int_equal(config->limits.max_connections, 10000000);
    assert_true(config->limits.outbound_queue_max == UINT64_C(1099511627776));
    assert_int_equal(config->limits.request_head_max, 1048576);
    assert_string_equal(config->http.static_root, "/srv/www");
    assert_int_equal(config->log_level, LOG_LEVEL_DEBUG);
    assert_int_equal(config->shutdown_timeout, 3600);
    config_release(config);
}

/* ---- integers: type and range, table-driven over every integer key ---- */

struct integer_key {
    const char *group;     /* NULL: top level */
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
    { "limits", "max_connections", "1", "10000000", "0", "10000001", "between 1 and 10000000" },
    { "limits", "outbound_queue_max", "1024", "1099511627776", "1023", "1099511627777",
      "between 1024 and 1099511627776" },
    { "limits", "request_head_max", "1024", "1048576", "1023", "1048577",
      "between 1024 and 1048576" },
    { NULL, "shutdown_timeout", "1", "3600", "0", "3601", "between 1 and 3600" },
};

/* The key on line 3 inside its group, or on line 2 at the top level. In
 * the websocket group the other ping key is set too, so that any value in
 * range passes the ping_timeout > ping_interval rule. */
static void integer_text(char *out, size_t size, const struct integer_key *key, const char *value)
{
    const char *extra = "";
    if (key->group != NULL && strcmp(key->group, "websocket") == 0)
        extra = strcmp(key->name, "ping_timeout") == 0 ? "  ping_interval = 0;\n"
                                                       : "  ping_timeout = 86400;\n";
    if (key->group != NULL)
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
    expect_error(LISTEN "routes = (\n { path = \"/x\"; mode = \"pubsub\"; } );\n",
                 "t.conf:3: 'routes[0].mode' must be one of echo, broadcast");
    expect_error(LISTEN "routes = { path = \"/x\"; mode = \"echo\"; };\n",
                 "t.conf:2: 'routes' must be a list of groups");
    expect_error(LISTEN "routes = (\n \"/x\" );\n", "t.conf:3: 'routes' must be a list of groups");
}

static void test_unknown_keys(void **state)
{
    expect_error(LISTEN "user = \"wsbroker\";\n", "t.conf:2: unknown key 'user'");
    expect_error(LISTEN "websocket = {\n ping_interval = 5;\n foo = 1;\n};\n",
                 "t.conf:4: unknown key 'websocket.foo'");
    expect_error(LISTEN "websocket = {\n compression = { enabled = true; };\n};\n",
                 "t.conf:3: unknown key 'websocket.compression'");
    expect_error(LISTEN "limits = {\n max_connections_per_ip = 0;\n};\n",
                 "t.conf:3: unknown key 'limits.max_connections_per_ip'");
    expect_error(LISTEN "http = {\n api_token = \"\";\n};\n",
                 "t.conf:3: unknown key 'http.api_token'");
    expect_error("listen = (\n { address = \"::1\"; port = 1; },\n { address = \"::1\"; port = 2;\n"
                 "   tls = { }; } );\n",
                 "t.conf:4: unknown key 'listen[1].tls'");
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
                 "t.conf:4: 'routes[0].echo_self' applies only to broadcast routes");
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
    assert_int_equal(config->route_count, 2);
    assert_string_equal(config->routes[0].path, "/chat/:room");
    assert_int_equal(config->routes[0].mode, ROUTE_MODE_BROADCAST);
    assert_string_equal(config->routes[0].channel, "room:{room}");
    assert_true(config->routes[0].echo_self);
    assert_string_equal(config->routes[1].path, "/echo");
    assert_int_equal(config->routes[1].mode, ROUTE_MODE_ECHO);
    assert_non_null(config->http.static_root);
    assert_true(config->http.static_root[0] == '/');
    static const char suffix[] = "/conf/../www";
    size_t length = strlen(config->http.static_root);
    assert_true(length >= sizeof(suffix) - 1);
    assert_string_equal(config->http.static_root + length - (sizeof(suffix) - 1), suffix);
    assert_int_equal(config->websocket.ping_interval, 25);
    assert_int_equal(config->log_level, LOG_LEVEL_INFO);
    config_release(config);
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
        cmocka_unit_test(test_every_key_set),
        cmocka_unit_test(test_integer_keys),
        cmocka_unit_test(test_integers_do_not_wrap),
        cmocka_unit_test(test_integer_spellings),
        cmocka_unit_test(test_type_errors),
        cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_listen),
        cmocka_unit_test(test_listen_errors),
        cmocka_unit_test(test_ping_rules),
        cmocka_unit_test(test_origins),
        cmocka_unit_test(test_subprotocols),
        cmocka_unit_test(test_static_root),
        cmocka_unit_test(test_route_defaults),
        cmocka_unit_test(test_route_errors),
        cmocka_unit_test(test_route_patterns),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_load_size_limit),
        cmocka_unit_test(test_shipped_config),
        cmocka_unit_test(test_refcount),
        cmocka_unit_test(test_error_buffer),
        cmocka_unit_test(test_failure_frees),
        cmocka_unit_test(test_log_level_parse),
        cmocka_unit_test(test_log_lines),
        cmocka_unit_test(test_log_long_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
