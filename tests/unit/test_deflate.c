/* Unit tests for permessage-deflate: negotiation of RFC 7692 offers, and
 * the message codec checked against zlib used directly as an independent
 * peer (a client compressing with or without context takeover, and a client
 * inflating what the server sends with exactly the agreed window). */
#define ZLIB_CONST
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "deflate.h"
#include "http.h"

/* ---- allocation watching ---- */

/* Under AddressSanitizer the allocator can report every allocation, which
 * lets the zip-bomb test bound the largest block the module asks for.
 * Without it that test still checks the result and the early stop. */
#if defined(__SANITIZE_ADDRESS__)
#define TEST_ALLOC_HOOKS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ALLOC_HOOKS 1
#endif
#endif

#ifdef TEST_ALLOC_HOOKS
int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void *, size_t),
                                              void (*free_hook)(const volatile void *));

static volatile bool alloc_watching;
static volatile size_t alloc_largest;
static volatile size_t alloc_window_sized;   /* allocations of 32 KiB or more */

static void alloc_malloc_hook(const volatile void *pointer, size_t size)
{
    (void)pointer;
    if (alloc_watching && size > alloc_largest)
        alloc_largest = size;
    if (alloc_watching && size >= 32768)
        alloc_window_sized++;
}

static void alloc_free_hook(const volatile void *pointer)
{
    (void)pointer;
}
#endif

/* Starts recording the largest allocation; false when it cannot be seen. */
static bool alloc_watch_start(void)
{
#ifdef TEST_ALLOC_HOOKS
    static bool installed;
    if (!installed) {
        if (__sanitizer_install_malloc_and_free_hooks(alloc_malloc_hook, alloc_free_hook) == 0)
            return false;
        installed = true;
    }
    alloc_largest = 0;
    alloc_window_sized = 0;
    alloc_watching = true;
    return true;
#else
    return false;
#endif
}

static size_t alloc_watch_stop(void)
{
#ifdef TEST_ALLOC_HOOKS
    alloc_watching = false;
    return alloc_largest;
#else
    return 0;
#endif
}

/* Allocations of 32 KiB or more since alloc_watch_start. */
static size_t alloc_watch_window_sized(void)
{
#ifdef TEST_ALLOC_HOOKS
    return alloc_window_sized;
#else
    return 0;
#endif
}

/* ---- data ---- */

static uint64_t rng_state;

static void rng_seed(uint64_t seed)
{
    rng_state = seed ? seed : 0x9E3779B97F4A7C15u;
}

static uint64_t rng_next(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static uint8_t *make_random(size_t length, uint64_t seed)
{
    uint8_t *data = malloc(length > 0 ? length : 1);
    assert_non_null(data);
    rng_seed(seed);
    for (size_t i = 0; i < length; i++)
        data[i] = (uint8_t)(rng_next() >> 24);
    return data;
}

/* Word salad: compressible like chat traffic, but not trivially so. */
static uint8_t *make_text(size_t length, uint64_t seed)
{
    static const char *const words[] = {
        "the", "channel", "message", "broker", "socket", "presence", "history",
        "subscribe", "publish", "hello", "world", "{\"type\":\"chat\",", "\"seq\":",
        "compression", "window", "deflate", "and", "of", "to", "a", "é", "ünïcode",
    };
    uint8_t *data = malloc(length > 0 ? length : 1);
    assert_non_null(data);
    rng_seed(seed);
    size_t at = 0;
    while (at < length) {
        const char *word = words[rng_next() % (sizeof words / sizeof words[0])];
        for (size_t i = 0; word[i] != '\0' && at < length; i++)
            data[at++] = (uint8_t)word[i];
        if (at < length)
            data[at++] = (rng_next() % 9 == 0) ? '\n' : ' ';
    }
    return data;
}

static const uint8_t tail[4] = { 0x00, 0x00, 0xff, 0xff };

/* ---- negotiation helpers ---- */

static const struct deflate_options default_options = {
    .enabled = true,
    .level = 1,
    .min_size = 256,
    .memory_level = 8,
    .max_window_bits = 15,
};

/* Parses a request carrying extra_headers (whole "Name: value\r\n" lines)
 * and negotiates with options. */
static bool negotiate_with(const char *extra_headers, const struct deflate_options *options,
                           struct deflate_params *params, char response[DEFLATE_RESPONSE_SIZE])
{
    char head[2048];
    int length = snprintf(head, sizeof head,
                          "GET /ws HTTP/1.1\r\nHost: example.test\r\nUpgrade: websocket\r\n"
                          "%s\r\n",
                          extra_headers);
    assert_true(length > 0 && (size_t)length < sizeof head);
    char *copy = malloc((size_t)length);    /* exact size: overreads trip ASan */
    assert_non_null(copy);
    memcpy(copy, head, (size_t)length);
    struct http_request request;
    assert_int_equal(http_request_parse(copy, (size_t)length, 8192, &request), length);
    bool accepted = deflate_negotiate(&request, options, params, response);
    free(copy);
    return accepted;
}

/* One Sec-WebSocket-Extensions header with value. */
static bool negotiate_value(const char *value, const struct deflate_options *options,
                            struct deflate_params *params, char response[DEFLATE_RESPONSE_SIZE])
{
    char line[1024];
    int length = snprintf(line, sizeof line, "Sec-WebSocket-Extensions: %s\r\n", value);
    assert_true(length > 0 && (size_t)length < sizeof line);
    return negotiate_with(line, options, params, response);
}

static void expect_accept(const char *value, const char *expected)
{
    struct deflate_params params;
    char response[DEFLATE_RESPONSE_SIZE];
    if (!negotiate_value(value, &default_options, &params, response))
        fail_msg("declined: %s", value);
    assert_string_equal(response, expected);
    assert_true(params.server_no_context_takeover);
}

static void expect_decline(const char *value)
{
    struct deflate_params params;
    char response[DEFLATE_RESPONSE_SIZE];
    memset(response, 'x', sizeof response);
    if (negotiate_value(value, &default_options, &params, response))
        fail_msg("accepted: %s -> %s", value, response);
    assert_string_equal(response, "");
}

#define PLAIN "permessage-deflate; server_no_context_takeover"
#define CNCT "; client_no_context_takeover"

/* ---- negotiation tests ---- */

static void test_negotiate_no_header(void **state)
{
    (void)state;
    struct deflate_params params;
    char response[DEFLATE_RESPONSE_SIZE];
    assert_false(negotiate_with("", &default_options, &params, response));
    assert_string_equal(response, "");
    assert_false(negotiate_with("Sec-WebSocket-Protocol: permessage-deflate\r\n",
                                &default_options, &params, response));
}

static void test_negotiate_other_extensions(void **state)
{
    (void)state;
    expect_decline("x-webkit-deflate-frame");
    expect_decline("foo; bar=1, baz; qux=\"a b\"");
    expect_decline("permessage-deflatex");
    expect_decline("deflate-frame; no_context_takeover");
}

static void test_negotiate_plain_offer(void **state)
{
    (void)state;
    struct deflate_params params;
    char response[DEFLATE_RESPONSE_SIZE];
    assert_true(negotiate_value("permessage-deflate", &default_options, &params, response));
    assert_string_equal(response, PLAIN);
    assert_true(params.server_no_context_takeover);
    assert_false(params.client_no_context_takeover);
    assert_int_equal(params.server_max_window_bits, 15);
    assert_int_equal(params.client_max_window_bits, 15);
    /* Extension and parameter names compare without case; the header
     * name too. */
    assert_true(negotiate_with("sec-websocket-extensions: PerMessage-Deflate; "
                               "Client_No_Context_Takeover\r\n",
                               &default_options, &params, response));
    assert_string_equal(response, PLAIN CNCT);
}

static void test_negotiate_each_parameter(void **state)
{
    (void)state;
    struct deflate_params params;
    char response[DEFLATE_RESPONSE_SIZE];

    expect_accept("permessage-deflate; server_no_context_takeover", PLAIN);

    assert_true(negotiate_value("permessage-deflate; client_no_context_takeover",
                                &default_options, &params, response));
    assert_string_equal(response, PLAIN CNCT);
    assert_true(params.client_no_context_takeover);

    assert_true(negotiate_value("permessage-deflate; server_max_window_bits=10",
                                &default_options, &params, response));
    assert_string_equal(response, PLAIN "; server_max_window_bits=10");
    assert_int_equal(params.server_max_window_bits, 10);

    /* client_max_window_bits is never answered (RFC 7692 §7.1.2.2). */
    assert_true(negotiate_value("permessage-deflate; client_max_window_bits",
                                &default_options, &params, response));
    assert_string_equal(response, PLAIN);
    assert_int_equal(params.client_max_window_bits, 15);

    assert_true(negotiate_value("permessage-deflate; client_max_window_bits=10",
                                &default_options, &params, response));
    assert_string_equal(response, PLAIN);
    assert_int_equal(params.client_max_window_bits, 10);

    assert_true(negotiate_value("permessage-deflate; client_max_window_bits=8",
                                &default_options, &params, response));
    assert_string_equal(response, PLAIN);
    assert_int_equal(params.client_max_window_bits, 8);

    assert_true(negotiate_value("permessage-deflate; client_no_context_takeover; "
                                "server_no_context_takeover; client_max_window_bits=12; "
                                "server_max_window_bits=11",
                                &default_options, &params, response));
    assert_string_equal(response, PLAIN CNCT "; server_max_window_bits=11");
    assert_true(params.client_no_context_takeover);
    assert_int_equal(params.server_max_window_bits, 11);
    assert_int_equal(params.client_max_window_bits, 12);
}

static void test_negotiate_server_window_8_falls_back(void **state)
{
    (void)state;
    struct deflate_params params;
    char response[DEFLATE_RESPONSE_SIZE];

    expect_decline("permessage-deflate; server_max_window_bits=8");
    /* RFC 7692 §7.1.3's fallback pattern: the second offer is taken. */
    assert_true(negotiate_value("permessage-deflate; server_max_window_bits=8; "
                                "client_no_context_takeover, permessage-deflate; "
                                "client_max_window_bits",
                                &default_options, &params, response));
    assert_string_equal(response, PLAIN);
    assert_false(params.client_no_context_takeover);
    assert_int_equal(params.server_max_window_bits, 15);
}

static void test_negotiate_server_window_9_to_15(void **state)
{
    (void)state;
    for (int bits = 9; bits <= 15; bits++) {
        char value[128];
        char expected[DEFLATE_RESPONSE_SIZE];
        struct deflate_params params;
        char response[DEFLATE_RESPONSE_SIZE];
        snprintf(value, sizeof value, "permessage-deflate; server_max_window_bits=%d", bits);
        snprintf(expected, sizeof expected, PLAIN "; server_max_window_bits=%d", bits);
        assert_true(negotiate_value(value, &default_options, &params, response));
        assert_string_equal(response, expected);
        assert_int_equal(params.server_max_window_bits, bits);
        assert_int_equal(params.client_max_window_bits, 15);
    }
}

static void test_negotiate_invalid_values(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "7", "16", "abc", "09", "0", "010", "1", "+9", "-9", "9a", "150", "\"\"",
        "\"09\"", "\"1 0\"", "\"16\"", "99999999999999999999",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char value[256];
        snprintf(value, sizeof value, "permessage-deflate; server_max_window_bits=%s", bad[i]);
        expect_decline(value);
        snprintf(value, sizeof value, "permessage-deflate; client_max_window_bits=%s", bad[i]);
        expect_decline(value);
        /* Only the bad offer is declined; a later one is still taken. */
        snprintf(value, sizeof value,
                 "permessage-deflate; server_max_window_bits=%s, permessage-deflate", bad[i]);
        expect_accept(value, PLAIN);
    }
    /* server_max_window_bits needs a value. */
    expect_decline("permessage-deflate; server_max_window_bits");
    expect_accept("permessage-deflate; server_max_window_bits, permessage-deflate; "
                  "client_no_context_takeover",
                  PLAIN CNCT);
}

static void test_negotiate_quoted_values(void **state)
{
    (void)state;
    struct deflate_params params;
    char response[DEFLATE_RESPONSE_SIZE];

    expect_accept("permessage-deflate; server_max_window_bits=\"10\"",
                  PLAIN "; server_max_window_bits=10");
    /* A quoted-pair unescapes to its second octet. */
    expect_accept("permessage-deflate; server_max_window_bits=\"1\\2\"",
                  PLAIN "; server_max_window_bits=12");
    assert_true(negotiate_value("permessage-deflate; client_max_window_bits=\"9\"",
                                &default_options, &params, response));
    assert_int_equal(params.client_max_window_bits, 9);
    /* Quoted values of other extensions may hold separators. */
    expect_accept("foo; bar=\"a, b; c=d\", permessage-deflate", PLAIN);
    /* An unterminated quote spoils the rest of that header. */
    expect_decline("permessage-deflate; server_max_window_bits=\"10");
    expect_decline("foo; bar=\"a, permessage-deflate");
}

static void test_negotiate_unknown_parameter(void **state)
{
    (void)state;
    expect_decline("permessage-deflate; foo");
    expect_decline("permessage-deflate; foo=1");
    expect_decline("permessage-deflate; client_no_context_takeover; x");
    expect_decline("permessage-deflate; server_max_window_bit=10");
    expect_accept("permessage-deflate; mystery=1, permessage-deflate; "
                  "client_no_context_takeover",
                  PLAIN CNCT);
}

static void test_negotiate_repeated_parameter(void **state)
{
    (void)state;
    expect_decline("permessage-deflate; server_no_context_takeover; server_no_context_takeover");
    expect_decline("permessage-deflate; client_no_context_takeover; client_no_context_takeover");
    expect_decline("permessage-deflate; server_max_window_bits=10; server_max_window_bits=10");
    expect_decline("permessage-deflate; client_max_window_bits; client_max_window_bits=10");
    expect_decline("permessage-deflate; client_max_window_bits=10; client_max_window_bits");
    /* Repeated though differently cased is still repeated. */
    expect_decline("permessage-deflate; server_no_context_takeover; SERVER_NO_CONTEXT_TAKEOVER");
    expect_accept("permessage-deflate; server_max_window_bits=9; server_max_window_bits=9, "
                  "permessage-deflate; server_max_window_bits=9",
                  PLAIN "; server_max_window_bits=9");
}

static void test_negotiate_value_on_flag(void **state)
{
    (void)state;
    expect_decline("permessage-deflate; server_no_context_takeover=1");
    expect_decline("permessage-deflate; client_no_context_takeover=\"x\"");
    expect_decline("permessage-deflate; client_no_context_takeover=true");
    expect_accept("permessage-deflate; server_no_context_takeover=1, permessage-deflate",
                  PLAIN);
}

static void test_negotiate_several_headers(void **state)
{
    (void)state;
    struct deflate_params params;
    char response[DEFLATE_RESPONSE_SIZE];

    assert_true(negotiate_with("Sec-WebSocket-Extensions: x-foo, permessage-deflate; bogus\r\n"
                               "X-Other: permessage-deflate\r\n"
                               "Sec-WebSocket-Extensions: permessage-deflate; "
                               "server_max_window_bits=13\r\n",
                               &default_options, &params, response));
    assert_string_equal(response, PLAIN "; server_max_window_bits=13");

    /* The first acceptable offer wins, across headers in order. */
    assert_true(negotiate_with("Sec-WebSocket-Extensions: permessage-deflate; "
                               "client_no_context_takeover\r\n"
                               "Sec-WebSocket-Extensions: permessage-deflate; "
                               "server_max_window_bits=13\r\n",
                               &default_options, &params, response));
    assert_string_equal(response, PLAIN CNCT);

    /* A malformed header does not stop the next one from being read. */
    assert_true(negotiate_with("Sec-WebSocket-Extensions: permessage-deflate;;\r\n"
                               "Sec-WebSocket-Extensions: permessage-deflate\r\n",
                               &default_options, &params, response));
    assert_string_equal(response, PLAIN);

    assert_false(negotiate_with("Sec-WebSocket-Extensions: permessage-deflate; a\r\n"
                                "Sec-WebSocket-Extensions: permessage-deflate; b\r\n",
                                &default_options, &params, response));
}

static void test_negotiate_several_offers(void **state)
{
    (void)state;
    expect_accept("foo, permessage-deflate; server_max_window_bits=12, permessage-deflate",
                  PLAIN "; server_max_window_bits=12");
    expect_accept("permessage-deflate; server_max_window_bits=7, "
                  "permessage-deflate; server_max_window_bits=16, "
                  "permessage-deflate; server_max_window_bits=14",
                  PLAIN "; server_max_window_bits=14");
    /* Empty list elements are allowed (RFC 7230 §7). */
    expect_accept(", ,permessage-deflate ,", PLAIN);
}

static void test_negotiate_whitespace(void **state)
{
    (void)state;
    expect_accept("permessage-deflate ; server_max_window_bits = 10 ;\tclient_no_context_takeover",
                  PLAIN CNCT "; server_max_window_bits=10");
    expect_accept("foo\t,\tpermessage-deflate\t;\tclient_max_window_bits", PLAIN);
    expect_accept("permessage-deflate; server_max_window_bits= \"11\" , x", PLAIN
                  "; server_max_window_bits=11");
}

static void test_negotiate_malformed(void **state)
{
    (void)state;
    expect_decline("permessage-deflate;");
    expect_decline("permessage-deflate;;");
    expect_decline("permessage-deflate; =10");
    expect_decline("permessage-deflate; server_max_window_bits=");
    expect_decline("permessage-deflate x");
    expect_decline("; permessage-deflate");
    expect_decline("permessage-deflate; server_max_window_bits=10 11");
    expect_decline("\"permessage-deflate\"");
    /* What came before the syntax error is still considered. */
    expect_accept("permessage-deflate; client_no_context_takeover, foo;;", PLAIN CNCT);
}

static void test_negotiate_options_disabled(void **state)
{
    (void)state;
    struct deflate_options options = default_options;
    struct deflate_params params;
    char response[DEFLATE_RESPONSE_SIZE];

    options.enabled = false;
    assert_false(negotiate_value("permessage-deflate", &options, &params, response));
    assert_string_equal(response, "");

    /* Options the compressor could not serve are refused too. */
    static const struct { int level, memory_level, window; } broken[] = {
        { -1, 8, 15 }, { 10, 8, 15 }, { 1, 0, 15 }, { 1, 10, 15 }, { 1, 8, 8 }, { 1, 8, 16 },
    };
    for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++) {
        options = default_options;
        options.level = broken[i].level;
        options.memory_level = broken[i].memory_level;
        options.max_window_bits = broken[i].window;
        assert_false(negotiate_value("permessage-deflate", &options, &params, response));
    }
}

static void test_negotiate_lower_max_window(void **state)
{
    (void)state;
    struct deflate_options options = default_options;
    struct deflate_params params;
    char response[DEFLATE_RESPONSE_SIZE];

    options.max_window_bits = 10;
    assert_true(negotiate_value("permessage-deflate; server_max_window_bits=12", &options,
                                &params, response));
    assert_string_equal(response, PLAIN "; server_max_window_bits=10");
    assert_int_equal(params.server_max_window_bits, 10);

    assert_true(negotiate_value("permessage-deflate; server_max_window_bits=9", &options,
                                &params, response));
    assert_string_equal(response, PLAIN "; server_max_window_bits=9");
    assert_int_equal(params.server_max_window_bits, 9);

    /* Not offered: RFC 7692 §7.1.2.1 lets the server state its window
     * anyway, and it must, since it is below 15. */
    assert_true(negotiate_value("permessage-deflate", &options, &params, response));
    assert_string_equal(response, PLAIN "; server_max_window_bits=10");
    assert_int_equal(params.server_max_window_bits, 10);

    options.max_window_bits = 15;
    assert_true(negotiate_value("permessage-deflate; server_max_window_bits=15", &options,
                                &params, response));
    assert_string_equal(response, PLAIN "; server_max_window_bits=15");
}

static void test_negotiate_response_fits(void **state)
{
    (void)state;
    struct deflate_params params;
    char response[DEFLATE_RESPONSE_SIZE];
    assert_true(negotiate_value("permessage-deflate; client_no_context_takeover; "
                                "server_no_context_takeover; server_max_window_bits=\"10\"; "
                                "client_max_window_bits=\"15\"",
                                &default_options, &params, response));
    assert_string_equal(response, PLAIN CNCT "; server_max_window_bits=10");
    assert_true(strlen(response) < DEFLATE_RESPONSE_SIZE);
}

/* ---- codec helpers ---- */

static struct deflate_inflater *new_inflater(bool client_no_context_takeover)
{
    struct deflate_params params = {
        .server_no_context_takeover = true,
        .client_no_context_takeover = client_no_context_takeover,
        .server_max_window_bits = 15,
        .client_max_window_bits = 15,
    };
    struct deflate_inflater *inflater = deflate_inflater_new(&params);
    assert_non_null(inflater);
    return inflater;
}

/* Inflates and checks the result is exactly expected. */
static void expect_inflate(struct deflate_inflater *inflater, const uint8_t *data, size_t length,
                           const void *expected, size_t expected_length)
{
    uint8_t *out = NULL;
    size_t out_length = 1234;
    assert_int_equal(deflate_inflate(inflater, data, length, SIZE_MAX, &out, &out_length),
                     DEFLATE_OK);
    assert_non_null(out);
    assert_int_equal(out_length, expected_length);
    if (expected_length > 0)
        assert_memory_equal(out, expected, expected_length);
    free(out);
}

static void expect_inflate_fails(struct deflate_inflater *inflater, const uint8_t *data,
                                 size_t length, size_t max, int expected)
{
    uint8_t *out = (uint8_t *)&out;
    size_t out_length = 1234;
    assert_int_equal(deflate_inflate(inflater, data, length, max, &out, &out_length), expected);
    assert_null(out);
    assert_int_equal(out_length, 0);
}

/* The peer's side of the RFC: inflate payload + 00 00 ff ff with exactly
 * window_bits, the way a client that agreed to that window would. */
static bool peer_inflate(const uint8_t *data, size_t length, int window_bits, uint8_t **out,
                         size_t *out_length)
{
    z_stream stream;
    memset(&stream, 0, sizeof stream);
    if (inflateInit2(&stream, -window_bits) != Z_OK)
        return false;
    uint8_t *input = malloc(length + sizeof tail);
    size_t capacity = length * 8 + 1024;
    uint8_t *output = malloc(capacity);
    assert_non_null(input);
    assert_non_null(output);
    if (length > 0)
        memcpy(input, data, length);
    memcpy(input + length, tail, sizeof tail);
    stream.next_in = input;
    stream.avail_in = (uInt)(length + sizeof tail);
    bool ok = true;
    while (ok && (stream.avail_in > 0 || stream.avail_out == 0)) {
        size_t used = stream.total_out;
        if (used == capacity) {
            capacity *= 2;
            output = realloc(output, capacity);
            assert_non_null(output);
        }
        stream.next_out = output + used;
        stream.avail_out = (uInt)(capacity - used);
        int z = inflate(&stream, Z_SYNC_FLUSH);
        ok = z == Z_OK || (z == Z_BUF_ERROR && stream.avail_out == 0);
    }
    *out_length = stream.total_out;
    *out = output;
    inflateEnd(&stream);
    free(input);
    return ok;
}

/* A client's compressor: sync flush per message, tail removed. With
 * reset_each_message it behaves as under client_no_context_takeover. */
struct peer_deflater {
    z_stream stream;
    bool reset_each_message;
};

static void peer_deflater_init(struct peer_deflater *peer, int level, int window_bits,
                               bool reset_each_message)
{
    memset(peer, 0, sizeof *peer);
    peer->reset_each_message = reset_each_message;
    assert_int_equal(deflateInit2(&peer->stream, level, Z_DEFLATED, -window_bits, 8,
                                  Z_DEFAULT_STRATEGY),
                     Z_OK);
}

static void peer_deflater_end(struct peer_deflater *peer)
{
    deflateEnd(&peer->stream);
}

/* flush is Z_SYNC_FLUSH or Z_FULL_FLUSH: both end in the removable tail. */
static uint8_t *peer_compress(struct peer_deflater *peer, const uint8_t *data, size_t length,
                              int flush, size_t *out_length)
{
    size_t capacity = deflateBound(&peer->stream, length) + 64;
    uint8_t *out = malloc(capacity);
    assert_non_null(out);
    peer->stream.next_in = data;
    peer->stream.avail_in = (uInt)length;
    peer->stream.next_out = out;
    peer->stream.avail_out = (uInt)capacity;
    int z = deflate(&peer->stream, flush);
    assert_true(z == Z_OK);
    assert_int_equal(peer->stream.avail_in, 0);
    assert_true(peer->stream.avail_out > 0);
    size_t used = capacity - peer->stream.avail_out;
    assert_true(used >= 4);
    assert_memory_equal(out + used - 4, tail, 4);
    *out_length = used - 4;
    if (peer->reset_each_message)
        assert_int_equal(deflateReset(&peer->stream), Z_OK);
    return out;
}

static struct deflate_options options_at(int level)
{
    struct deflate_options options = default_options;
    options.level = level;
    return options;
}

/* ---- RFC 7692 §7.2.3 examples ---- */

static const uint8_t hello_compressed[] = { 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00 };
static const uint8_t hello_again[] = { 0xf2, 0x00, 0x11, 0x00, 0x00 };
static const uint8_t hello_stored[] = { 0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65,
                                        0x6c, 0x6c, 0x6f, 0x00 };
static const uint8_t hello_bfinal[] = { 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00 };
static const uint8_t hello_two_blocks[] = { 0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff,
                                            0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00 };

static void test_inflate_rfc_examples(void **state)
{
    (void)state;
    struct deflate_inflater *inflater = new_inflater(true);
    expect_inflate(inflater, hello_compressed, sizeof hello_compressed, "Hello", 5);
    expect_inflate(inflater, hello_stored, sizeof hello_stored, "Hello", 5);
    expect_inflate(inflater, hello_bfinal, sizeof hello_bfinal, "Hello", 5);
    expect_inflate(inflater, hello_two_blocks, sizeof hello_two_blocks, "Hello", 5);
    static const uint8_t empty[] = { 0x00 };
    expect_inflate(inflater, empty, sizeof empty, "", 0);
    /* A bare empty payload can only be an empty message. */
    expect_inflate(inflater, empty, 0, "", 0);
    /* A final block ending the payload exactly (no 0x00 after it). */
    expect_inflate(inflater, hello_bfinal, sizeof hello_bfinal - 1, "Hello", 5);
    expect_inflate(inflater, hello_compressed, sizeof hello_compressed, "Hello", 5);
    deflate_inflater_free(inflater);
    deflate_inflater_free(NULL);
}

/* RFC 7692 §7.2.3.2: the second "Hello" refers back into the first. */
static void test_inflate_rfc_context_takeover(void **state)
{
    (void)state;
    struct deflate_inflater *inflater = new_inflater(false);
    expect_inflate(inflater, hello_compressed, sizeof hello_compressed, "Hello", 5);
    expect_inflate(inflater, hello_again, sizeof hello_again, "Hello", 5);
    expect_inflate(inflater, hello_again, sizeof hello_again, "Hello", 5);
    /* The window survives a message flushed with a final block. */
    expect_inflate(inflater, hello_bfinal, sizeof hello_bfinal, "Hello", 5);
    expect_inflate(inflater, hello_again, sizeof hello_again, "Hello", 5);
    expect_inflate(inflater, hello_bfinal, sizeof hello_bfinal - 1, "Hello", 5);
    expect_inflate(inflater, hello_again, sizeof hello_again, "Hello", 5);
    /* And the empty payload leaves it untouched. */
    expect_inflate(inflater, hello_again, 0, "", 0);
    expect_inflate(inflater, hello_again, sizeof hello_again, "Hello", 5);
    deflate_inflater_free(inflater);

    /* Under client_no_context_takeover each message starts afresh, so the
     * back reference points before the start: corrupt. */
    inflater = new_inflater(true);
    expect_inflate(inflater, hello_compressed, sizeof hello_compressed, "Hello", 5);
    expect_inflate_fails(inflater, hello_again, sizeof hello_again, SIZE_MAX, DEFLATE_ERROR);
    deflate_inflater_free(inflater);
}

/* ---- context takeover against a zlib client ---- */

static void run_takeover_stream(bool no_context_takeover, int flush)
{
    struct peer_deflater peer;
    peer_deflater_init(&peer, 6, 15, no_context_takeover);
    struct deflate_inflater *inflater = new_inflater(no_context_takeover);

    uint8_t *first = make_text(3000, 7);
    uint8_t *messages[4] = { first, first, make_text(70000, 8), make_random(5000, 9) };
    size_t lengths[4] = { 3000, 3000, 70000, 5000 };
    size_t sizes[4];
    for (int i = 0; i < 4; i++) {
        uint8_t *compressed = peer_compress(&peer, messages[i], lengths[i], flush, &sizes[i]);
        expect_inflate(inflater, compressed, sizes[i], messages[i], lengths[i]);
        free(compressed);
    }
    /* The repeat only shrinks this much when the context is shared, which
     * proves the test exercises what it claims. (A full flush also drops
     * the compressor's history, though the messages stay valid.) */
    if (no_context_takeover || flush == Z_FULL_FLUSH)
        assert_int_equal(sizes[1], sizes[0]);
    else
        assert_true(sizes[1] < sizes[0] / 10);

    free(first);
    free(messages[2]);
    free(messages[3]);
    deflate_inflater_free(inflater);
    peer_deflater_end(&peer);
}

static void test_inflate_context_takeover(void **state)
{
    (void)state;
    run_takeover_stream(false, Z_SYNC_FLUSH);
    run_takeover_stream(false, Z_FULL_FLUSH);
}

static void test_inflate_no_context_takeover(void **state)
{
    (void)state;
    run_takeover_stream(true, Z_SYNC_FLUSH);
}

/* A message that needs the previous one cannot be read without it. */
static void test_inflate_takeover_needs_history(void **state)
{
    (void)state;
    struct peer_deflater peer;
    peer_deflater_init(&peer, 9, 15, false);
    uint8_t *text = make_text(2000, 11);
    size_t first_size, second_size;
    uint8_t *first = peer_compress(&peer, text, 2000, Z_SYNC_FLUSH, &first_size);
    uint8_t *second = peer_compress(&peer, text, 2000, Z_SYNC_FLUSH, &second_size);

    struct deflate_inflater *fresh = new_inflater(false);
    expect_inflate_fails(fresh, second, second_size, SIZE_MAX, DEFLATE_ERROR);
    deflate_inflater_free(fresh);

    struct deflate_inflater *resetting = new_inflater(true);
    expect_inflate(resetting, first, first_size, text, 2000);
    expect_inflate_fails(resetting, second, second_size, SIZE_MAX, DEFLATE_ERROR);
    deflate_inflater_free(resetting);

    free(first);
    free(second);
    free(text);
    peer_deflater_end(&peer);
}

/* ---- bounds ---- */

static uint8_t *make_bomb(size_t zeros, size_t *length)
{
    struct peer_deflater peer;
    peer_deflater_init(&peer, 9, 15, false);
    uint8_t *plain = calloc(zeros, 1);
    assert_non_null(plain);
    uint8_t *bomb = peer_compress(&peer, plain, zeros, Z_SYNC_FLUSH, length);
    free(plain);
    peer_deflater_end(&peer);
    return bomb;
}

static void test_inflate_zip_bomb(void **state)
{
    (void)state;
    const size_t max = 1024 * 1024;
    size_t bomb_length;
    uint8_t *bomb = make_bomb(10 * 1000 * 1000, &bomb_length);
    assert_true(bomb_length < 20000);

    struct deflate_inflater *inflater = new_inflater(true);
    bool watched = alloc_watch_start();
    expect_inflate_fails(inflater, bomb, bomb_length, max, DEFLATE_TOO_BIG);
    size_t largest = alloc_watch_stop();
    if (watched) {
        assert_true(largest > max / 2);                 /* the hooks did see it */
        assert_true(largest <= max + 16 * 1024);
    }

    /* Stored-block lengths that do not match: corrupt if ever read. That the
     * bomb still reports TOO_BIG shows inflating stopped at the bound. */
    static const uint8_t garbage[] = { 0x05, 0x00, 0x05, 0x00, 0x07 };
    uint8_t *tainted = malloc(bomb_length + sizeof garbage);
    assert_non_null(tainted);
    memcpy(tainted, bomb, bomb_length);
    memcpy(tainted + bomb_length, garbage, sizeof garbage);
    expect_inflate_fails(inflater, tainted, bomb_length + sizeof garbage, max, DEFLATE_TOO_BIG);
    expect_inflate_fails(inflater, tainted, bomb_length + sizeof garbage, SIZE_MAX,
                         DEFLATE_ERROR);
    expect_inflate_fails(inflater, bomb, bomb_length, 0, DEFLATE_TOO_BIG);

    free(tainted);
    free(bomb);
    deflate_inflater_free(inflater);
}

static void test_inflate_max_boundary(void **state)
{
    (void)state;
    const size_t max = 100000;
    struct deflate_inflater *inflater = new_inflater(false);
    uint8_t *text = make_text(max + 1, 21);
    for (size_t length = max - 1; length <= max + 1; length++) {
        struct peer_deflater peer;
        peer_deflater_init(&peer, 6, 15, false);
        size_t size;
        uint8_t *compressed = peer_compress(&peer, text, length, Z_SYNC_FLUSH, &size);
        uint8_t *out = NULL;
        size_t out_length = 0;
        int rc = deflate_inflate(inflater, compressed, size, max, &out, &out_length);
        if (length <= max) {
            assert_int_equal(rc, DEFLATE_OK);
            assert_int_equal(out_length, length);
            assert_memory_equal(out, text, length);
            free(out);
        } else {
            assert_int_equal(rc, DEFLATE_TOO_BIG);
            assert_null(out);
        }
        free(compressed);
        peer_deflater_end(&peer);
        deflate_inflater_free(inflater);
        inflater = new_inflater(false);
    }
    /* max 0 still admits the empty message. */
    static const uint8_t empty[] = { 0x00 };
    uint8_t *out = NULL;
    size_t out_length = 1;
    assert_int_equal(deflate_inflate(inflater, empty, 1, 0, &out, &out_length), DEFLATE_OK);
    assert_int_equal(out_length, 0);
    free(out);
    expect_inflate_fails(inflater, hello_compressed, sizeof hello_compressed, 4,
                         DEFLATE_TOO_BIG);
    free(text);
    deflate_inflater_free(inflater);
}

/* ---- corrupt input ---- */

static void test_inflate_corrupt(void **state)
{
    (void)state;
    static const uint8_t reserved_type[] = { 0xff, 0x00 };
    static const uint8_t bad_stored_length[] = { 0x00, 0x05, 0x00, 0x05, 0x00, 'H', 'e',
                                                 'l', 'l', 'o', 0x00 };
    static const uint8_t final_then_garbage[] = { 0xf3, 0x48, 0xcd, 0xc9, 0xc9,
                                                  0x07, 0x00, 0x07 };
    /* After the final block, an empty fixed block and then a stored block
     * header cut short. */
    static const uint8_t final_then_truncated[] = { 0xf3, 0x48, 0xcd, 0xc9, 0xc9,
                                                    0x07, 0x00, 0x02 };
    /* A stored block of 16 bytes holding 2 (and the 4 of the tail). */
    static const uint8_t stored_short[] = { 0x00, 0x10, 0x00, 0xef, 0xff, 'H', 'e' };
    struct {
        const uint8_t *data;
        size_t length;
    } cases[] = {
        { reserved_type, sizeof reserved_type },
        { bad_stored_length, sizeof bad_stored_length },
        { final_then_garbage, sizeof final_then_garbage },
        { final_then_truncated, sizeof final_then_truncated },
        { stored_short, sizeof stored_short },
        { hello_compressed, sizeof hello_compressed - 1 },  /* truncated mid-block */
        { hello_again, sizeof hello_again },                /* reference before start */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int reset = 0; reset <= 1; reset++) {
            struct deflate_inflater *inflater = new_inflater(reset != 0);
            expect_inflate_fails(inflater, cases[i].data, cases[i].length, SIZE_MAX,
                                 DEFLATE_ERROR);
            deflate_inflater_free(inflater);
        }
    }
}

/* Random payloads must end in a clean verdict, never a crash or a leak
 * (AddressSanitizer watches). */
static void test_inflate_random_input(void **state)
{
    (void)state;
    struct deflate_inflater *inflater = new_inflater(false);
    uint8_t buffer[512];
    int verdicts[4] = { 0 };
    rng_seed(99);
    for (int round = 0; round < 3000; round++) {
        size_t length = 1 + (size_t)(rng_next() % sizeof buffer);
        for (size_t i = 0; i < length; i++)
            buffer[i] = (uint8_t)(rng_next() >> 32);
        uint8_t *out = NULL;
        size_t out_length = 0;
        int rc = deflate_inflate(inflater, buffer, length, 65536, &out, &out_length);
        assert_true(rc == DEFLATE_OK || rc == DEFLATE_ERROR || rc == DEFLATE_TOO_BIG);
        assert_true(rc == DEFLATE_OK ? out != NULL : out == NULL);
        verdicts[-rc]++;
        free(out);
        if (rc != DEFLATE_OK) {
            deflate_inflater_free(inflater);
            inflater = new_inflater(round % 2 == 0);
        }
    }
    assert_true(verdicts[-DEFLATE_ERROR] > 0);
    deflate_inflater_free(inflater);
}

/* ---- compressing ---- */

/* Our compressor against our inflater and against zlib limited to exactly
 * window_bits (which proves the window is respected). */
static void check_round_trip(struct deflate_inflater *inflater,
                             const struct deflate_options *options, int window_bits,
                             const uint8_t *data, size_t length)
{
    uint8_t *compressed = NULL;
    size_t compressed_length = 0;
    assert_int_equal(deflate_compress(options, window_bits, data, length, &compressed,
                                      &compressed_length),
                     DEFLATE_OK);
    assert_non_null(compressed);
    assert_true(compressed_length > 0);

    expect_inflate(inflater, compressed, compressed_length, data, length);

    uint8_t *peer_out = NULL;
    size_t peer_length = 0;
    assert_true(peer_inflate(compressed, compressed_length, window_bits, &peer_out,
                             &peer_length));
    assert_int_equal(peer_length, length);
    if (length > 0)
        assert_memory_equal(peer_out, data, length);
    free(peer_out);
    free(compressed);
}

static void test_compress_round_trips(void **state)
{
    (void)state;
    static const size_t sizes[] = { 0, 1, 100, 64 * 1024, 1024 * 1024 };
    const size_t largest = sizes[sizeof sizes / sizeof sizes[0] - 1];
    uint8_t *text = make_text(largest, 1);
    uint8_t *noise = make_random(largest, 2);

    for (int level = 0; level <= 9; level++) {
        struct deflate_options options = options_at(level);
        for (int window = 9; window <= 15; window++) {
            /* One inflater with context takeover reads the whole series:
             * independent messages need no reset. */
            struct deflate_inflater *inflater = new_inflater(false);
            for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
                /* Different offsets so the messages are not all prefixes. */
                size_t offset = sizes[s] < largest ? (size_t)(window * 37 + level) : 0;
                check_round_trip(inflater, &options, window, text + offset, sizes[s]);
                check_round_trip(inflater, &options, window, noise + offset, sizes[s]);
            }
            deflate_inflater_free(inflater);
        }
    }
    free(text);
    free(noise);
}

static void test_compress_memory_levels(void **state)
{
    (void)state;
    uint8_t *text = make_text(200000, 5);
    struct deflate_inflater *inflater = new_inflater(true);
    for (int memory_level = 1; memory_level <= 9; memory_level++) {
        struct deflate_options options = default_options;
        options.level = 6;
        options.memory_level = memory_level;
        check_round_trip(inflater, &options, 12, text, 200000);
    }
    deflate_inflater_free(inflater);
    free(text);
}

static void test_compress_empty(void **state)
{
    (void)state;
    uint8_t *out = NULL;
    size_t out_length = 0;
    assert_int_equal(deflate_compress(&default_options, 15, (const uint8_t *)"", 0, &out,
                                      &out_length),
                     DEFLATE_OK);
    /* RFC 7692 §7.2.3.6. */
    assert_int_equal(out_length, 1);
    assert_int_equal(out[0], 0x00);
    struct deflate_inflater *inflater = new_inflater(false);
    expect_inflate(inflater, out, out_length, "", 0);
    deflate_inflater_free(inflater);
    free(out);
}

static void test_compress_hello_matches_rfc(void **state)
{
    (void)state;
    /* §7.2.3.1's bytes are what zlib makes of "Hello" with fixed codes. */
    uint8_t *out = NULL;
    size_t out_length = 0;
    assert_int_equal(deflate_compress(&default_options, 15, (const uint8_t *)"Hello", 5, &out,
                                      &out_length),
                     DEFLATE_OK);
    assert_int_equal(out_length, sizeof hello_compressed);
    assert_memory_equal(out, hello_compressed, sizeof hello_compressed);
    free(out);
}

static void test_compress_deterministic(void **state)
{
    (void)state;
    uint8_t *text = make_text(300000, 3);
    for (int level = 0; level <= 9; level += 3) {
        struct deflate_options options = options_at(level);
        uint8_t *first = NULL;
        uint8_t *second = NULL;
        size_t first_length = 0;
        size_t second_length = 0;
        assert_int_equal(deflate_compress(&options, 11, text, 300000, &first, &first_length),
                         DEFLATE_OK);
        assert_int_equal(deflate_compress(&options, 11, text, 300000, &second, &second_length),
                         DEFLATE_OK);
        assert_int_equal(first_length, second_length);
        assert_memory_equal(first, second, first_length);
        if (level > 0)
            assert_true(first_length < 300000 / 2);
        free(first);
        free(second);
    }
    free(text);
}

/* One reused compressor set against a fresh stream per message: windows,
 * levels and memory levels interleaved, text and noise of many sizes. Every
 * output must be byte for byte what a fresh stream gives (so no context
 * leaks from one message into the next) and inflate back exactly with zlib
 * held to the message's window. */
static void test_compressors_match_fresh_streams(void **state)
{
    (void)state;
    static const int levels[] = { 1, 6, 9, 0 };
    static const int memory_levels[] = { 8, 4 };
    struct deflate_compressors *set = deflate_compressors_new();
    assert_non_null(set);
    uint8_t *text = make_text(20000, 31);
    uint8_t *noise = make_random(20000, 32);
    for (unsigned i = 0; i < 300; i++) {
        struct deflate_options options = options_at(levels[i % 4]);
        options.memory_level = memory_levels[(i / 50) % 2];
        int window_bits = 9 + (int)((i * 3) % 7);
        size_t length = (i * 7919u) % 20000u;
        const uint8_t *data = (i % 5 == 4 ? noise : text) + (i % 13);
        if (length > 20000 - (i % 13))
            length = 20000 - (i % 13);

        uint8_t *reused = NULL;
        size_t reused_length = 0;
        assert_int_equal(deflate_compressors_compress(set, &options, window_bits, data, length,
                                                      &reused, &reused_length),
                         DEFLATE_OK);
        uint8_t *fresh = NULL;
        size_t fresh_length = 0;
        assert_int_equal(deflate_compress(&options, window_bits, data, length, &fresh,
                                          &fresh_length),
                         DEFLATE_OK);
        assert_int_equal(reused_length, fresh_length);
        assert_memory_equal(reused, fresh, fresh_length);

        uint8_t *back = NULL;
        size_t back_length = 0;
        assert_true(peer_inflate(reused, reused_length, window_bits, &back, &back_length));
        assert_int_equal(back_length, length);
        if (length > 0)
            assert_memory_equal(back, data, length);
        free(back);
        free(fresh);
        free(reused);
    }
    free(noise);
    free(text);
    deflate_compressors_free(set);
}

/* The set keeps one stream per window: after every window has been used,
 * more messages cost no more memory; a level change sets the stream up
 * again rather than adding one. */
static void test_compressors_reuse_their_streams(void **state)
{
    (void)state;
    struct deflate_compressors *set = deflate_compressors_new();
    assert_non_null(set);
    size_t empty = deflate_compressors_footprint(set);
    assert_true(empty > 0);
    uint8_t *text = make_text(4000, 33);
    struct deflate_options options = options_at(1);
    size_t after_first_pass = 0;
    for (unsigned round = 0; round < 20; round++) {
        if (round == 10)
            options = options_at(6);   /* a reload changing the level */
        for (int window_bits = 9; window_bits <= 15; window_bits++) {
            uint8_t *out = NULL;
            size_t out_length = 0;
            assert_int_equal(deflate_compressors_compress(set, &options, window_bits, text, 4000,
                                                          &out, &out_length),
                             DEFLATE_OK);
            free(out);
        }
        if (round == 0) {
            after_first_pass = deflate_compressors_footprint(set);
            assert_true(after_first_pass > empty + 7 * 4096);   /* zlib state counted */
        }
        assert_int_equal(deflate_compressors_footprint(set), after_first_pass);
    }
    free(text);
    deflate_compressors_free(set);
    deflate_compressors_free(NULL);
    assert_int_equal(deflate_compressors_footprint(NULL), 0);
}

/* Same checks of window and options as deflate_compress, and an empty
 * message is the single 0x00 octet. */
static void test_compressors_refuse_bad_arguments(void **state)
{
    (void)state;
    static const uint8_t data[] = "some data";
    struct deflate_compressors *set = deflate_compressors_new();
    assert_non_null(set);
    uint8_t *out = NULL;
    size_t out_length = 0;
    assert_int_equal(deflate_compressors_compress(set, &default_options, 8, data, 9, &out,
                                                  &out_length),
                     DEFLATE_ERROR);
    assert_null(out);
    assert_int_equal(deflate_compressors_compress(set, &default_options, 16, data, 9, &out,
                                                  &out_length),
                     DEFLATE_ERROR);
    struct deflate_options options = default_options;
    options.level = 10;
    assert_int_equal(deflate_compressors_compress(set, &options, 15, data, 9, &out, &out_length),
                     DEFLATE_ERROR);
    /* A refused setup leaves the set usable. */
    assert_int_equal(deflate_compressors_compress(set, &default_options, 15, data, 9, &out,
                                                  &out_length),
                     DEFLATE_OK);
    free(out);
    assert_int_equal(deflate_compressors_compress(set, &default_options, 15, data, 0, &out,
                                                  &out_length),
                     DEFLATE_OK);
    assert_int_equal(out_length, 1);
    assert_int_equal(out[0], 0x00);
    free(out);
    deflate_compressors_free(set);
}

static void test_compress_refuses_bad_arguments(void **state)
{
    (void)state;
    static const uint8_t data[] = "some data";
    uint8_t *out = (uint8_t *)&out;
    size_t out_length = 7;
    assert_int_equal(deflate_compress(&default_options, 8, data, 9, &out, &out_length),
                     DEFLATE_ERROR);
    assert_null(out);
    assert_int_equal(out_length, 0);
    assert_int_equal(deflate_compress(&default_options, 16, data, 9, &out, &out_length),
                     DEFLATE_ERROR);
    struct deflate_options options = options_at(10);
    assert_int_equal(deflate_compress(&options, 15, data, 9, &out, &out_length), DEFLATE_ERROR);
    options = default_options;
    options.memory_level = 0;
    assert_int_equal(deflate_compress(&options, 15, data, 9, &out, &out_length), DEFLATE_ERROR);
    assert_null(out);
}

/* The path a broker takes: negotiate, then each side reads the other. */
static void test_negotiated_exchange(void **state)
{
    (void)state;
    struct deflate_options options = default_options;
    options.max_window_bits = 12;
    struct deflate_params params;
    char response[DEFLATE_RESPONSE_SIZE];
    assert_true(negotiate_value("permessage-deflate; client_max_window_bits; "
                                "server_max_window_bits=10",
                                &options, &params, response));
    assert_int_equal(params.server_max_window_bits, 10);

    uint8_t *text = make_text(50000, 13);
    uint8_t *compressed = NULL;
    size_t compressed_length = 0;
    assert_int_equal(deflate_compress(&options, params.server_max_window_bits, text, 50000,
                                      &compressed, &compressed_length),
                     DEFLATE_OK);
    uint8_t *peer_out = NULL;
    size_t peer_length = 0;
    assert_true(peer_inflate(compressed, compressed_length, 10, &peer_out, &peer_length));
    assert_int_equal(peer_length, 50000);
    assert_memory_equal(peer_out, text, 50000);
    free(peer_out);
    free(compressed);

    struct deflate_inflater *inflater = deflate_inflater_new(&params);
    assert_non_null(inflater);
    struct peer_deflater peer;
    peer_deflater_init(&peer, 6, 15, params.client_no_context_takeover);
    for (int i = 0; i < 3; i++) {
        size_t size;
        uint8_t *message = peer_compress(&peer, text + i * 1000, 20000, Z_SYNC_FLUSH, &size);
        expect_inflate(inflater, message, size, text + i * 1000, 20000);
        free(message);
    }
    peer_deflater_end(&peer);
    deflate_inflater_free(inflater);
    free(text);
}

/* A message may hold any number of final blocks (RFC 7692 §7.2.3.4). Each
 * restart keeps the 32 KiB window in place: copying it out and back for
 * every 2-byte empty final block let one 1 MiB message cost seconds of CPU.
 * In sanitizer builds the allocations prove no window is copied per block. */
static void test_many_final_blocks_keep_the_window_cheaply(void **state)
{
    (void)state;
    enum { TEXT = 32768, EMPTY_BLOCKS = 5000 };
    uint8_t *text = malloc(TEXT);
    assert_non_null(text);
    for (size_t i = 0; i < TEXT; i++)
        text[i] = (uint8_t)('a' + (i * 7 + i / 13) % 26);
    /* the text as one final deflate stream, then empty final blocks */
    z_stream z;
    memset(&z, 0, sizeof(z));
    assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t capacity = deflateBound(&z, TEXT) + 2 * EMPTY_BLOCKS + 16;
    uint8_t *payload = malloc(capacity);
    assert_non_null(payload);
    z.next_in = text;
    z.avail_in = TEXT;
    z.next_out = payload;
    z.avail_out = (uInt)capacity;
    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
    size_t length = capacity - z.avail_out;
    deflateEnd(&z);
    for (int i = 0; i < EMPTY_BLOCKS; i++) {
        payload[length++] = 0x03;   /* BFINAL, fixed Huffman, end of block */
        payload[length++] = 0x00;
    }
    struct deflate_params params = { .server_no_context_takeover = true,
                                      .server_max_window_bits = 15,
                                      .client_max_window_bits = 15 };
    struct deflate_inflater *inflater = deflate_inflater_new(&params);
    assert_non_null(inflater);
    uint8_t *out = NULL;
    size_t out_length = 0;
    bool watched = alloc_watch_start();
    int rc = deflate_inflate(inflater, payload, length, 1 << 20, &out, &out_length);
    (void)alloc_watch_stop();
    assert_int_equal(rc, DEFLATE_OK);
    assert_int_equal(out_length, TEXT);
    assert_memory_equal(out, text, TEXT);
    if (watched)
        assert_true(alloc_watch_window_sized() < 16);
    free(out);
    deflate_inflater_free(inflater);
    free(payload);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_negotiate_no_header),
        cmocka_unit_test(test_negotiate_other_extensions),
        cmocka_unit_test(test_negotiate_plain_offer),
        cmocka_unit_test(test_negotiate_each_parameter),
        cmocka_unit_test(test_negotiate_server_window_8_falls_back),
        cmocka_unit_test(test_negotiate_server_window_9_to_15),
        cmocka_unit_test(test_negotiate_invalid_values),
        cmocka_unit_test(test_negotiate_quoted_values),
        cmocka_unit_test(test_negotiate_unknown_parameter),
        cmocka_unit_test(test_negotiate_repeated_parameter),
        cmocka_unit_test(test_negotiate_value_on_flag),
        cmocka_unit_test(test_negotiate_several_headers),
        cmocka_unit_test(test_negotiate_several_offers),
        cmocka_unit_test(test_negotiate_whitespace),
        cmocka_unit_test(test_negotiate_malformed),
        cmocka_unit_test(test_negotiate_options_disabled),
        cmocka_unit_test(test_negotiate_lower_max_window),
        cmocka_unit_test(test_negotiate_response_fits),
        cmocka_unit_test(test_inflate_rfc_examples),
        cmocka_unit_test(test_inflate_rfc_context_takeover),
        cmocka_unit_test(test_inflate_context_takeover),
        cmocka_unit_test(test_inflate_no_context_takeover),
        cmocka_unit_test(test_inflate_takeover_needs_history),
        cmocka_unit_test(test_inflate_zip_bomb),
        cmocka_unit_test(test_inflate_max_boundary),
        cmocka_unit_test(test_inflate_corrupt),
        cmocka_unit_test(test_inflate_random_input),
        cmocka_unit_test(test_compress_round_trips),
        cmocka_unit_test(test_compress_memory_levels),
        cmocka_unit_test(test_compress_empty),
        cmocka_unit_test(test_compress_hello_matches_rfc),
        cmocka_unit_test(test_compress_deterministic),
        cmocka_unit_test(test_compress_refuses_bad_arguments),
        cmocka_unit_test(test_compressors_match_fresh_streams),
        cmocka_unit_test(test_compressors_reuse_their_streams),
        cmocka_unit_test(test_compressors_refuse_bad_arguments),
        cmocka_unit_test(test_negotiated_exchange),
        cmocka_unit_test(test_many_final_blocks_keep_the_window_cheaply),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
