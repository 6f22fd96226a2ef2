/* Unit tests for the route module: channel names, pattern checks, matching
 * (parameters, trailing slashes, first match wins, pubsub and echo routes
 * without a channel), percent-decoding and channel template expansion. Paths are heap copies of exactly the bytes
 * under test, so a read past path_length trips AddressSanitizer. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "route.h"

#define LISTEN "listen = ( { address = \"127.0.0.1\"; port = 8080; } );\n"

static struct config *routes_config(const char *routes)
{
    char text[4096], error[CONFIG_ERROR_SIZE];
    snprintf(text, sizeof(text), LISTEN "routes = (\n%s\n);\n", routes);
    struct config *config = config_parse(text, "t.conf", "/", error, sizeof(error));
    if (config == NULL)
        fail_msg("%s", error);
    return config;
}

struct match {
    enum route_match_result result;
    const struct route_config *route;
    char channel[CHANNEL_NAME_MAX + 1];
};

static enum route_match_result match(const struct config *config, const char *path,
                                     struct match *out)
{
    size_t length = strlen(path);
    char *copy = malloc(length > 0 ? length : 1);
    assert_non_null(copy);
    memcpy(copy, path, length);
    out->route = NULL;
    memset(out->channel, 'x', sizeof(out->channel));
    out->result = route_match(config, copy, length, &out->route, out->channel,
                              sizeof(out->channel));
    free(copy);
    return out->result;
}

static void expect_channel(const struct config *config, const char *path, size_t route_index,
                           const char *channel)
{
    struct match m;
    if (match(config, path, &m) != ROUTE_MATCHED)
        fail_msg("%s: result %d", path, m.result);
    assert_ptr_equal(m.route, &config->routes[route_index]);
    assert_string_equal(m.channel, channel);
}

static void expect_result(const struct config *config, const char *path,
                          enum route_match_result result)
{
    struct match m;
    if (match(config, path, &m) != result)
        fail_msg("%s: result %d, wanted %d", path, m.result, result);
}

/* ---- channel names ---- */

static void test_channel_name_valid(void **state)
{
    char name[CHANNEL_NAME_MAX + 2];
    memset(name, 'a', sizeof(name));

    assert_true(route_channel_name_valid("room:lobby", 10));
    assert_true(route_channel_name_valid("a-b_c.d:e@f/g", 13));
    assert_true(route_channel_name_valid("AZaz09", 6));
    assert_true(route_channel_name_valid(name, CHANNEL_NAME_MAX));
    assert_false(route_channel_name_valid(name, CHANNEL_NAME_MAX + 1));
    assert_false(route_channel_name_valid("", 0));
    assert_false(route_channel_name_valid(NULL, 3));
    assert_false(route_channel_name_valid("a b", 3));
    assert_false(route_channel_name_valid("a\0b", 3));
    assert_false(route_channel_name_valid("{a}", 3));
    assert_false(route_channel_name_valid("a%20", 4));
    assert_false(route_channel_name_valid("a+b", 3));
    assert_false(route_channel_name_valid("caf\xc3\xa9", 5));
    assert_false(route_channel_name_valid("a~b", 3));
    /* only length bytes count */
    assert_true(route_channel_name_valid("ab cd", 2));
}

/* ---- pattern checks ---- */

static void test_pattern_check_valid(void **state)
{
    const char *paths[] = { "/", "/echo", "/echo/", "/chat/:room", "/a/:x/b/:y", "/:x",
                            "/~user/a.b@c:d-e_f", "/a:b", "/:x/" };
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        const char *problem = route_pattern_check(paths[i], NULL);
        if (problem != NULL)
            fail_msg("%s: %s", paths[i], problem);
    }
    assert_null(route_pattern_check("/chat/:room", "room:{room}"));
    assert_null(route_pattern_check("/chat/:room", "{room}"));
    assert_null(route_pattern_check("/a/:x/b/:y", "{y}/{x}@{x}"));
    assert_null(route_pattern_check("/lobby", "lobby"));
    assert_null(route_pattern_check("/", "root"));

    char long_template[CHANNEL_NAME_MAX + 16];
    memset(long_template, 'c', CHANNEL_NAME_MAX - 1);
    strcpy(long_template + CHANNEL_NAME_MAX - 1, "{x}");
    assert_null(route_pattern_check("/:x", long_template));   /* 127 + at least 1 */
}

static void test_pattern_check_invalid(void **state)
{
    static const struct {
        const char *path;
        const char *channel;
        const char *problem;
    } cases[] = {
        { NULL, NULL, "path must start with '/'" },
        { "", NULL, "path must start with '/'" },
        { "echo", NULL, "path must start with '/'" },
        { "//", NULL, "empty path segment" },
        { "/a//b", NULL, "empty path segment" },
        { "/a/:", NULL, "empty parameter name" },
        { "/:a-b", NULL, "invalid character in parameter name" },
        { "/:a:b", NULL, "invalid character in parameter name" },
        { "/:x/y/:x", NULL, "duplicate parameter name" },
        { "/a b", NULL, "invalid character in path segment" },
        { "/a%41", NULL, "invalid character in path segment" },
        { "/a{b}", NULL, "invalid character in path segment" },
        { "/caf\xc3\xa9", NULL, "invalid character in path segment" },
        { "/.", NULL, "'.' or '..' path segment" },
        { "/a/../b", NULL, "'.' or '..' path segment" },
        { "/:x", "", "empty channel template" },
        { "/:x", "a{x", "unclosed '{' in channel template" },
        { "/:x", "{y}", "channel template names a parameter the path does not have" },
        { "/:xy", "{x}", "channel template names a parameter the path does not have" },
        { "/x", "{x}", "channel template names a parameter the path does not have" },
        { "/:x", "{}", "channel template names a parameter the path does not have" },
        { "/:x", "a b", "invalid character in channel template" },
        { "/:x", "x}", "invalid character in channel template" },
        { "/:x", "~{x}", "invalid character in channel template" },
        /* a bad path is reported before its template */
        { "x", "{x}", "path must start with '/'" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *problem = route_pattern_check(cases[i].path, cases[i].channel);
        if (problem == NULL || strcmp(problem, cases[i].problem) != 0)
            fail_msg("case %zu: got \"%s\", wanted \"%s\"", i, problem ? problem : "(null)",
                     cases[i].problem);
    }

    char long_template[CHANNEL_NAME_MAX + 16];
    memset(long_template, 'c', CHANNEL_NAME_MAX);
    strcpy(long_template + CHANNEL_NAME_MAX, "{x}");
    assert_string_equal(route_pattern_check("/:x", long_template),
                        "channel template always expands to more than 128 bytes");
    memset(long_template, 'c', CHANNEL_NAME_MAX + 1);
    long_template[CHANNEL_NAME_MAX + 1] = '\0';
    assert_string_equal(route_pattern_check("/:x", long_template),
                        "channel template always expands to more than 128 bytes");
}

/* ---- matching ---- */

static void test_match_params(void **state)
{
    struct config *config = routes_config(
        " { path = \"/chat/:room\"; mode = \"broadcast\"; channel = \"room:{room}\"; },\n"
        " { path = \"/echo\"; mode = \"echo\"; },\n"
        " { path = \"/t/:a/x/:b\"; mode = \"broadcast\"; },\n"
        " { path = \"/swap/:a/:b\"; mode = \"broadcast\"; channel = \"{b}.{a}.{b}\"; },\n"
        " { path = \"/fixed/:who\"; mode = \"broadcast\"; channel = \"lobby\"; }");

    expect_channel(config, "/chat/lobby", 0, "room:lobby");
    expect_channel(config, "/chat/a.b-c_d@e:f", 0, "room:a.b-c_d@e:f");
    expect_channel(config, "/t/one/x/two", 2, "one:two");
    expect_channel(config, "/swap/1/2", 3, "2.1.2");
    expect_channel(config, "/fixed/anyone", 4, "lobby");

    struct match m;
    assert_int_equal(match(config, "/echo", &m), ROUTE_MATCHED);
    assert_ptr_equal(m.route, &config->routes[1]);
    assert_int_equal(m.route->mode, ROUTE_MODE_ECHO);
    assert_string_equal(m.channel, "");

    expect_result(config, "/chat", ROUTE_NOT_FOUND);
    expect_result(config, "/chat/", ROUTE_NOT_FOUND);         /* parameters are non-empty */
    expect_result(config, "/chat/lobby/", ROUTE_NOT_FOUND);   /* trailing slash matters */
    expect_result(config, "/chat/a/b", ROUTE_NOT_FOUND);
    expect_result(config, "/chat//", ROUTE_NOT_FOUND);
    expect_result(config, "/echo/", ROUTE_NOT_FOUND);
    expect_result(config, "/echo/x", ROUTE_NOT_FOUND);
    expect_result(config, "/Echo", ROUTE_NOT_FOUND);          /* literals are case-sensitive */
    expect_result(config, "/ech%6F", ROUTE_NOT_FOUND);        /* and not decoded */
    expect_result(config, "//echo", ROUTE_NOT_FOUND);
    expect_result(config, "/", ROUTE_NOT_FOUND);
    expect_result(config, "", ROUTE_NOT_FOUND);
    expect_result(config, "echo", ROUTE_NOT_FOUND);
    expect_result(config, "/t/one/y/two", ROUTE_NOT_FOUND);
    config_release(config);
}

static void test_match_percent_decoding(void **state)
{
    struct config *config = routes_config(
        " { path = \"/chat/:room\"; mode = \"broadcast\"; channel = \"room:{room}\"; }");

    expect_channel(config, "/chat/%41b%63", 0, "room:Abc");
    expect_channel(config, "/chat/a%2Fb", 0, "room:a/b");
    expect_channel(config, "/chat/a%2fb%3Ac", 0, "room:a/b:c");
    expect_channel(config, "/chat/%40home", 0, "room:@home");
    expect_result(config, "/chat/a%20b", ROUTE_BAD_CHANNEL);      /* space is no channel byte */
    expect_result(config, "/chat/caf%C3%A9", ROUTE_BAD_CHANNEL);
    expect_result(config, "/chat/caf\xc3\xa9", ROUTE_BAD_CHANNEL);
    expect_result(config, "/chat/a+b", ROUTE_BAD_CHANNEL);        /* '+' is not a space here */
    expect_result(config, "/chat/%", ROUTE_BAD_CHANNEL);
    expect_result(config, "/chat/%4", ROUTE_BAD_CHANNEL);
    expect_result(config, "/chat/%4g", ROUTE_BAD_CHANNEL);
    expect_result(config, "/chat/%zz", ROUTE_BAD_CHANNEL);
    expect_result(config, "/chat/a%00b", ROUTE_BAD_CHANNEL);
    expect_result(config, "/chat/%7Bx%7D", ROUTE_BAD_CHANNEL);
    expect_result(config, "/chat/%252F", ROUTE_BAD_CHANNEL);      /* decoded once: "%2F" */

    struct match m;
    assert_int_equal(match(config, "/chat/a%20b", &m), ROUTE_BAD_CHANNEL);
    assert_ptr_equal(m.route, &config->routes[0]);   /* so the caller can log the route */
    config_release(config);
}

static void test_match_channel_length(void **state)
{
    struct config *config = routes_config(
        " { path = \"/chat/:room\"; mode = \"broadcast\"; channel = \"room:{room}\"; }");
    char path[1024], expected[CHANNEL_NAME_MAX + 1];

    /* "room:" is 5 bytes, so 123 bytes of room fill the 128 exactly */
    strcpy(path, "/chat/");
    memset(path + 6, 'r', 123);
    path[6 + 123] = '\0';
    strcpy(expected, "room:");
    memset(expected + 5, 'r', 123);
    expected[128] = '\0';
    expect_channel(config, path, 0, expected);

    strcpy(path + 6 + 123, "r");
    expect_result(config, path, ROUTE_BAD_CHANNEL);

    /* escapes count by their decoded length: 123 "%41" decode to 123 bytes */
    strcpy(path, "/chat/");
    for (size_t i = 0; i < 123; i++)
        memcpy(path + 6 + 3 * i, "%41", 4);
    memset(expected + 5, 'A', 123);
    expect_channel(config, path, 0, expected);
    strcat(path, "%41");
    expect_result(config, path, ROUTE_BAD_CHANNEL);

    memset(path + 6, 'z', 900);
    path[906] = '\0';
    expect_result(config, path, ROUTE_BAD_CHANNEL);
    config_release(config);
}

static void test_match_first_wins(void **state)
{
    struct config *config = routes_config(
        " { path = \"/a/b\"; mode = \"echo\"; },\n"
        " { path = \"/a/:x\"; mode = \"broadcast\"; },\n"
        " { path = \"/:y/b\"; mode = \"broadcast\"; channel = \"y:{y}\"; },\n"
        " { path = \"/:p/:q\"; mode = \"echo\"; }");
    struct match m;

    assert_int_equal(match(config, "/a/b", &m), ROUTE_MATCHED);
    assert_ptr_equal(m.route, &config->routes[0]);
    expect_channel(config, "/a/c", 1, "c");
    expect_channel(config, "/z/b", 2, "y:z");
    assert_int_equal(match(config, "/z/c", &m), ROUTE_MATCHED);
    assert_ptr_equal(m.route, &config->routes[3]);
    config_release(config);

    /* Built by hand: config_parse refuses a route an earlier one shadows,
     * but the matcher's rule must hold for whatever it is given. */
    struct route_config routes[] = {
        { .path = "/:x", .mode = ROUTE_MODE_BROADCAST, .channel = "first:{x}" },
        { .path = "/same", .mode = ROUTE_MODE_BROADCAST, .channel = "second" },
    };
    struct config manual = { .routes = routes, .route_count = 2 };
    expect_channel(&manual, "/same", 0, "first:same");
}

static void test_match_root_and_trailing_slash(void **state)
{
    struct config *config = routes_config(
        " { path = \"/\"; mode = \"broadcast\"; },\n"
        " { path = \"/feed/\"; mode = \"broadcast\"; },\n"
        " { path = \"/feed\"; mode = \"echo\"; },\n"
        " { path = \"/u/:name/\"; mode = \"broadcast\"; channel = \"user:{name}\"; }");
    struct match m;

    expect_channel(config, "/", 0, "root");
    expect_channel(config, "/feed/", 1, "feed/");
    assert_int_equal(match(config, "/feed", &m), ROUTE_MATCHED);
    assert_ptr_equal(m.route, &config->routes[2]);
    expect_channel(config, "/u/ann/", 3, "user:ann");
    expect_result(config, "/u/ann", ROUTE_NOT_FOUND);
    expect_result(config, "/u//", ROUTE_NOT_FOUND);
    expect_result(config, "//", ROUTE_NOT_FOUND);
    config_release(config);
}

static void test_match_uses_length(void **state)
{
    struct config *config = routes_config(" { path = \"/echo\"; mode = \"echo\"; }");
    const struct route_config *route = NULL;
    char channel[CHANNEL_NAME_MAX + 1];

    assert_int_equal(route_match(config, "/echo?x=1", 5, &route, channel, sizeof(channel)),
                     ROUTE_MATCHED);
    assert_ptr_equal(route, &config->routes[0]);
    assert_int_equal(route_match(config, "/echo/x", 5, &route, channel, sizeof(channel)),
                     ROUTE_MATCHED);
    assert_int_equal(route_match(config, "/echo", 4, &route, channel, sizeof(channel)),
                     ROUTE_NOT_FOUND);
    assert_int_equal(route_match(config, NULL, 0, &route, channel, sizeof(channel)),
                     ROUTE_NOT_FOUND);
    assert_int_equal(route_match(NULL, "/echo", 5, &route, channel, sizeof(channel)),
                     ROUTE_NOT_FOUND);
    config_release(config);

    struct config empty = { .route_count = 0 };
    assert_int_equal(route_match(&empty, "/echo", 5, &route, channel, sizeof(channel)),
                     ROUTE_NOT_FOUND);
}

/* Pubsub routes name their channels per message: a match leaves the
 * channel empty, whatever the path's parameters hold. */
static void test_match_pubsub(void **state)
{
    struct config *config = routes_config(
        " { path = \"/ws\"; mode = \"pubsub\"; },\n"
        " { path = \"/chat/:room\"; mode = \"broadcast\"; channel = \"room:{room}\"; },\n"
        " { path = \"/t/:tenant/ws\"; mode = \"pubsub\"; echo_self = false; },\n"
        " { path = \"/echo\"; mode = \"echo\"; }");
    struct match m;

    assert_int_equal(match(config, "/ws", &m), ROUTE_MATCHED);
    assert_ptr_equal(m.route, &config->routes[0]);
    assert_int_equal(m.route->mode, ROUTE_MODE_PUBSUB);
    assert_string_equal(m.channel, "");
    expect_channel(config, "/chat/lobby", 1, "room:lobby");
    assert_int_equal(match(config, "/t/acme/ws", &m), ROUTE_MATCHED);
    assert_ptr_equal(m.route, &config->routes[2]);
    assert_string_equal(m.channel, "");
    assert_false(m.route->echo_self);
    /* a parameter that would be no channel name does not matter here */
    assert_int_equal(match(config, "/t/a%20b/ws", &m), ROUTE_MATCHED);
    assert_ptr_equal(m.route, &config->routes[2]);
    assert_string_equal(m.channel, "");
    assert_int_equal(match(config, "/echo", &m), ROUTE_MATCHED);
    assert_string_equal(m.channel, "");

    expect_result(config, "/ws/", ROUTE_NOT_FOUND);
    expect_result(config, "/ws/x", ROUTE_NOT_FOUND);
    expect_result(config, "/WS", ROUTE_NOT_FOUND);
    expect_result(config, "/t//ws", ROUTE_NOT_FOUND);
    expect_result(config, "/t/acme", ROUTE_NOT_FOUND);
    config_release(config);

    /* Built by hand: even a template on a pubsub route is never expanded. */
    struct route_config routes[] = {
        { .path = "/:x", .mode = ROUTE_MODE_PUBSUB, .channel = "c:{x}" },
    };
    struct config manual = { .routes = routes, .route_count = 1 };
    assert_int_equal(match(&manual, "/abc", &m), ROUTE_MATCHED);
    assert_ptr_equal(m.route, &routes[0]);
    assert_string_equal(m.channel, "");

    /* the pattern check of a pubsub route covers its path only */
    assert_null(route_pattern_check("/ws", NULL));
    assert_null(route_pattern_check("/t/:tenant/ws", NULL));
    assert_string_equal(route_pattern_check("/w s", NULL), "invalid character in path segment");
}

/* A channel buffer below the documented size is never overrun. */
static void test_match_small_channel_buffer(void **state)
{
    struct config *config = routes_config(
        " { path = \"/chat/:room\"; mode = \"broadcast\"; channel = \"room:{room}\"; }");
    const struct route_config *route = NULL;
    char *channel = malloc(8);
    assert_non_null(channel);

    assert_int_equal(route_match(config, "/chat/ab", 8, &route, channel, 8), ROUTE_MATCHED);
    assert_string_equal(channel, "room:ab");
    assert_int_equal(route_match(config, "/chat/abc", 9, &route, channel, 8), ROUTE_BAD_CHANNEL);
    free(channel);
    config_release(config);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_channel_name_valid),
        cmocka_unit_test(test_pattern_check_valid),
        cmocka_unit_test(test_pattern_check_invalid),
        cmocka_unit_test(test_match_params),
        cmocka_unit_test(test_match_percent_decoding),
        cmocka_unit_test(test_match_channel_length),
        cmocka_unit_test(test_match_first_wins),
        cmocka_unit_test(test_match_root_and_trailing_slash),
        cmocka_unit_test(test_match_uses_length),
        cmocka_unit_test(test_match_small_channel_buffer),
        cmocka_unit_test(test_match_pubsub),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
