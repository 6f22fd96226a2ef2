/* Unit tests for the handshake module: the order and status of every check,
 * key validation and Sec-WebSocket-Accept, Origin policy (same host, lists,
 * wildcards, IPv6, prefix attacks), subprotocol choice and the 101 response. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handshake.h"

#define RFC_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define RFC_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

static const struct handshake_policy no_policy = { NULL, 0, NULL, 0, NULL };

/* Parses head (request line and header lines, the empty line is added) and
 * runs handshake_check on it. */
static int check_head(const char *head, const struct handshake_policy *policy,
                      struct handshake_result *result)
{
    size_t length = strlen(head);
    char *buf = malloc(length + 2);
    assert_non_null(buf);
    memcpy(buf, head, length);
    memcpy(buf + length, "\r\n", 2);
    struct http_request request;
    int parsed = http_request_parse(buf, length + 2, 65536, &request);
    if (parsed != (int)length + 2)
        fail_msg("test request did not parse (%d): %s", parsed, head);
    int status = handshake_check(&request, policy, result);
    free(buf);
    return status;
}

enum {
    FAIL_METHOD = 1 << 0,
    FAIL_HTTP10 = 1 << 1,
    FAIL_HOST = 1 << 2,
    FAIL_UPGRADE = 1 << 3,
    FAIL_CONNECTION = 1 << 4,
    FAIL_VERSION = 1 << 5,
    FAIL_KEY = 1 << 6,
    FAIL_ORIGIN = 1 << 7,
    FAIL_CHECKS = 8,
};

static const int fail_status[FAIL_CHECKS] = { 400, 400, 400, 400, 400, 426, 400, 403 };

/* A request failing exactly the checks in fail. */
static void build_request(unsigned fail, char *out, size_t size)
{
    int n = snprintf(out, size,
                     "%s /chat HTTP/1.%c\r\n"
                     "Host: example.com\r\n%s"
                     "Upgrade: %s\r\n"
                     "Connection: %s\r\n"
                     "Sec-WebSocket-Version: %s\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Origin: %s\r\n",
                     (fail & FAIL_METHOD) ? "POST" : "GET", (fail & FAIL_HTTP10) ? '0' : '1',
                     (fail & FAIL_HOST) ? "Host: example.com\r\n" : "",
                     (fail & FAIL_UPGRADE) ? "h2c" : "websocket",
                     (fail & FAIL_CONNECTION) ? "keep-alive" : "keep-alive, Upgrade",
                     (fail & FAIL_VERSION) ? "8" : "13",
                     (fail & FAIL_KEY) ? "dGhlIHNhbXBsZSBub25jZQ=" : RFC_KEY,
                     (fail & FAIL_ORIGIN) ? "http://evil.example" : "http://example.com");
    assert_true(n > 0 && (size_t)n < size);
}

static void test_valid_request(void **state)
{
    char head[1024];
    struct handshake_result result;
    build_request(0, head, sizeof head);
    assert_int_equal(check_head(head, &no_policy, &result), 101);
    assert_int_equal(result.status, 101);
    assert_string_equal(result.accept, RFC_ACCEPT);
    assert_null(result.subprotocol);
    assert_non_null(result.reason);
}

static void test_each_check_status(void **state)
{
    char head[1024];
    struct handshake_result result;
    const char *reasons[FAIL_CHECKS];
    for (unsigned i = 0; i < FAIL_CHECKS; i++) {
        build_request(1u << i, head, sizeof head);
        assert_int_equal(check_head(head, &no_policy, &result), fail_status[i]);
        assert_int_equal(result.status, fail_status[i]);
        assert_non_null(result.reason);
        assert_string_equal(result.accept, "");
        reasons[i] = result.reason;
    }
    /* distinct reasons, so the order test below can tell checks apart */
    for (unsigned i = 0; i < FAIL_CHECKS; i++) {
        for (unsigned j = i + 1; j < FAIL_CHECKS; j++)
            assert_string_not_equal(reasons[i], reasons[j]);
    }
}

/* Every combination of failures is answered by the first check in order. */
static void test_check_order(void **state)
{
    char head[1024];
    struct handshake_result result;
    const char *reasons[FAIL_CHECKS];
    for (unsigned i = 0; i < FAIL_CHECKS; i++) {
        build_request(1u << i, head, sizeof head);
        check_head(head, &no_policy, &result);
        reasons[i] = result.reason;
    }
    for (unsigned fail = 1; fail < (1u << FAIL_CHECKS); fail++) {
        unsigned first = (unsigned)__builtin_ctz(fail);
        build_request(fail, head, sizeof head);
        int status = check_head(head, &no_policy, &result);
        if (status != fail_status[first] || strcmp(result.reason, reasons[first]) != 0)
            fail_msg("failures 0x%x: got %d \"%s\", expected %d \"%s\"", fail, status,
                     result.reason, fail_status[first], reasons[first]);
    }
}

#define BASE_REST                                                                  \
    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n" \
    "Sec-WebSocket-Key: " RFC_KEY "\r\n"

static void assert_status(const char *head, int expected)
{
    struct handshake_result result;
    int status = check_head(head, &no_policy, &result);
    if (status != expected)
        fail_msg("expected %d, got %d (%s) for:\n%s", expected, status, result.reason, head);
}

static void test_method_and_version(void **state)
{
    assert_status("GET / HTTP/1.1\r\nHost: h\r\n" BASE_REST, 101);
    assert_status("get / HTTP/1.1\r\nHost: h\r\n" BASE_REST, 400);
    assert_status("HEAD / HTTP/1.1\r\nHost: h\r\n" BASE_REST, 400);
    assert_status("GET / HTTP/1.0\r\nHost: h\r\n" BASE_REST, 400);
}

static void test_host_rules(void **state)
{
    assert_status("GET / HTTP/1.1\r\n" BASE_REST, 400);
    assert_status("GET / HTTP/1.1\r\nHost: h\r\nhost: h\r\n" BASE_REST, 400);
    assert_status("GET / HTTP/1.1\r\nHOST: h\r\n" BASE_REST, 101);
}

static void test_upgrade_and_connection(void **state)
{
    static const char *const ok[] = {
        "Upgrade: WebSocket\r\nConnection: Upgrade\r\n",
        "Upgrade: h2c, websocket\r\nConnection: keep-alive, Upgrade\r\n",
        "Upgrade: websocket\r\nConnection: upgrade\r\n",
        "Upgrade: websocket\r\nConnection: keep-alive\r\nConnection: UPGRADE\r\n",
    };
    static const char *const bad[] = {
        "Connection: Upgrade\r\n",
        "Upgrade: websockets\r\nConnection: Upgrade\r\n",
        "Upgrade: web socket\r\nConnection: Upgrade\r\n",
        "Upgrade: websocket\r\n",
        "Upgrade: websocket\r\nConnection: close\r\n",
        "Upgrade: websocket\r\nConnection: upgrade-insecure\r\n",
        "Upgrade: websocket\r\nX-Connection: Upgrade\r\n",
    };
    char head[512];
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        snprintf(head, sizeof head,
                 "GET / HTTP/1.1\r\nHost: h\r\n%sSec-WebSocket-Version: 13\r\n"
                 "Sec-WebSocket-Key: " RFC_KEY "\r\n", ok[i]);
        assert_status(head, 101);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(head, sizeof head,
                 "GET / HTTP/1.1\r\nHost: h\r\n%sSec-WebSocket-Version: 13\r\n"
                 "Sec-WebSocket-Key: " RFC_KEY "\r\n", bad[i]);
        assert_status(head, 400);
    }
}

static void test_websocket_version(void **state)
{
    static const char *const versions[] = {
        "", "Sec-WebSocket-Version: 8\r\n", "Sec-WebSocket-Version: 130\r\n",
        "Sec-WebSocket-Version: 13, 8\r\n", "Sec-WebSocket-Version: 1 3\r\n",
        "Sec-WebSocket-Version:\r\n",
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 13\r\n",
    };
    char head[512];
    for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
        snprintf(head, sizeof head,
                 "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "%sSec-WebSocket-Key: " RFC_KEY "\r\n", versions[i]);
        assert_status(head, 426);
    }
    assert_status("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Version:   13  \r\nSec-WebSocket-Key: " RFC_KEY "\r\n", 101);
}

static void test_websocket_key(void **state)
{
    static const char *const good[] = {
        RFC_KEY,
        "AQIDBAUGBwgJCgsMDQ4PEA==",
        "AAAAAAAAAAAAAAAAAAAAAA==",
        "+/+/+/+/+/+/+/+/+/+/+w==",
    };
    static const char *const bad[] = {
        "",
        "dGhlIHNhbXBsZSBub25jZQ=",      /* 23 characters */
        "dGhlIHNhbXBsZSBub25jZQ===",    /* 25 */
        "AAAAAAAAAAAAAAAAAAAAAAA=",     /* 17 bytes */
        "AAAAAAAAAAAAAAAAAAAA",         /* 15 bytes */
        "AAAAAAAAAAAAAAAAAAAAAAAAAAA=", /* 20 bytes */
        "dGhlIHNhbXBsZSBub25jZQAA",     /* no padding */
        "dGhlIHNhbXBs=SBub25jZQ==",     /* '=' inside */
        "dGhlIHNhbXBsZSBub25j-_==",     /* URL-safe alphabet */
        "dGhlIHNhbXBsZSBub25 ZQ==",     /* space inside */
        "dGhlIHNhbXBsZSBub25jZQ==,dGhlIHNhbXBsZSBub25jZQ==",
    };
    char head[512];
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        snprintf(head, sizeof head, "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n",
                 good[i]);
        assert_status(head, 101);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(head, sizeof head, "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n",
                 bad[i]);
        assert_status(head, 400);
    }
    /* missing, repeated */
    assert_status("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Version: 13\r\n", 400);
    assert_status("GET / HTTP/1.1\r\nHost: h\r\n" BASE_REST "Sec-WebSocket-Key: " RFC_KEY "\r\n",
                  400);
}

static void test_origin_in_request(void **state)
{
    /* absent: a non-browser client, allowed */
    assert_status("GET / HTTP/1.1\r\nHost: example.com:8080\r\n" BASE_REST, 101);
    assert_status("GET / HTTP/1.1\r\nHost: example.com:8080\r\n" BASE_REST
                  "Origin: http://example.com:8080\r\n", 101);
    assert_status("GET / HTTP/1.1\r\nHost: example.com:8080\r\n" BASE_REST
                  "Origin: http://example.com\r\n", 403);
    assert_status("GET / HTTP/1.1\r\nHost: example.com:8080\r\n" BASE_REST "Origin: null\r\n",
                  403);
    assert_status("GET / HTTP/1.1\r\nHost: example.com\r\n" BASE_REST "Origin:\r\n", 403);
    /* repeated Origin is ambiguous: refused even when both match */
    assert_status("GET / HTTP/1.1\r\nHost: example.com\r\n" BASE_REST
                  "Origin: http://example.com\r\nOrigin: http://example.com\r\n", 403);

    static const char *const allowed[] = { "https://app.example.org" };
    struct handshake_policy policy = { allowed, 1, NULL, 0, NULL };
    struct handshake_result result;
    assert_int_equal(check_head("GET / HTTP/1.1\r\nHost: ws.example.org\r\n" BASE_REST
                                "Origin: https://app.example.org\r\n", &policy, &result), 101);
    assert_int_equal(check_head("GET / HTTP/1.1\r\nHost: ws.example.org\r\n" BASE_REST
                                "Origin: https://evil.example.org\r\n", &policy, &result), 403);
}

struct origin_case {
    const char *origin;
    const char *host;
    const char *const *allowed;
    size_t allowed_count;
    bool expected;
};

static const char *const list_star[] = { "*" };
static const char *const list_null[] = { "null" };
static const char *const list_app[] = { "https://app.example.com" };
static const char *const list_app_upper[] = { "HTTPS://App.Example.COM:443" };
static const char *const list_wild[] = { "https://*.example.com" };
static const char *const list_wild_port[] = { "https://*.example.com:8443" };
static const char *const list_ext[] = { "chrome-extension://abcdef" };
static const char *const list_v6[] = { "http://[::1]:3000" };
static const char *const list_broken[] = { "example.com", "*.example.com", "https://*",
                                           "https://app.example.com/", "https://**.example.com",
                                           "" };
static const char *const list_many[] = { "http://one.test", "https://two.test:8443",
                                         "null" };

#define NONE NULL, 0
#define LIST(l) l, sizeof l / sizeof l[0]

static const struct origin_case origin_cases[] = {
    /* same host, default policy */
    { "http://example.com", "example.com", NONE, true },
    { "http://example.com", "example.com:80", NONE, true },
    { "http://example.com:80", "example.com", NONE, true },
    { "http://example.com:80", "example.com:80", NONE, true },
    { "https://example.com", "example.com", NONE, true },
    { "https://example.com", "example.com:443", NONE, true },
    { "https://example.com:443", "example.com", NONE, true },
    { "https://example.com", "example.com:80", NONE, false },
    { "http://example.com", "example.com:443", NONE, false },
    { "https://example.com:80", "example.com", NONE, false },
    { "http://EXAMPLE.com", "example.COM", NONE, true },
    { "HTTP://example.com", "example.com", NONE, true },
    { "http://example.com:8080", "example.com:8080", NONE, true },
    { "http://example.com:8080", "example.com", NONE, false },
    { "http://example.com", "example.com:8080", NONE, false },
    { "http://example.com:8080", "example.com:8081", NONE, false },
    { "http://evil.com", "example.com", NONE, false },
    { "http://example.com.evil.net", "example.com", NONE, false },
    { "http://example.co", "example.com", NONE, false },
    { "http://xexample.com", "example.com", NONE, false },
    { "http://sub.example.com", "example.com", NONE, false },
    { "http://example.com/", "example.com", NONE, false },
    { "http://example.com/path", "example.com", NONE, false },
    { "http://user@example.com", "example.com", NONE, false },
    { "http://evil.com#@example.com", "example.com", NONE, false },
    { "http://example.com:", "example.com", NONE, false },
    { "http://example.com:0", "example.com", NONE, false },
    { "http://example.com:65536", "example.com:65536", NONE, false },
    { "http://example.com:08080", "example.com:8080", NONE, false },
    { "ws://example.com:8080", "example.com:8080", NONE, false },
    { "file://example.com", "example.com", NONE, false },
    { "example.com", "example.com", NONE, false },
    { "//example.com", "example.com", NONE, false },
    { "", "example.com", NONE, false },
    { "null", "example.com", NONE, false },
    { "null", "null", NONE, false },
    { "NULL", "example.com", LIST(list_null), false },
    /* IPv6 literals */
    { "http://[::1]:8080", "[::1]:8080", NONE, true },
    { "http://[::1]", "[::1]", NONE, true },
    { "http://[::1]", "[::1]:80", NONE, true },
    { "http://[::1]:8080", "[::1]", NONE, false },
    { "http://[::1]:8080", "[::2]:8080", NONE, false },
    { "http://[2001:DB8::1]:8080", "[2001:db8::1]:8080", NONE, true },
    { "http://[::1]:8080", "::1:8080", NONE, false },
    { "http://[::1", "[::1", NONE, false },
    { "http://[evil.com]", "[evil.com]", NONE, false },
    /* "*" and "null" */
    { "http://evil.com", "example.com", LIST(list_star), true },
    { "null", "example.com", LIST(list_star), true },
    { "null", "example.com", LIST(list_null), true },
    { "http://evil.com", "example.com", LIST(list_null), false },
    /* exact entries */
    { "https://app.example.com", "ws.example.com", LIST(list_app), true },
    { "https://APP.Example.com", "ws.example.com", LIST(list_app), true },
    { "HTTPS://app.example.com:443", "ws.example.com", LIST(list_app), true },
    { "http://app.example.com", "ws.example.com", LIST(list_app), false },
    { "https://app.example.com:8443", "ws.example.com", LIST(list_app), false },
    { "https://app.example.com.evil.net", "ws.example.com", LIST(list_app), false },
    { "https://evilapp.example.com", "ws.example.com", LIST(list_app), false },
    { "https://sub.app.example.com", "ws.example.com", LIST(list_app), false },
    { "https://app.example.co", "ws.example.com", LIST(list_app), false },
    { "https://app.example.com", "ws.example.com", LIST(list_app_upper), true },
    { "https://app.example.com:443", "ws.example.com", LIST(list_app_upper), true },
    { "http://app.example.com:443", "ws.example.com", LIST(list_app_upper), false },
    /* wildcard entries */
    { "https://a.example.com", "ws.test", LIST(list_wild), true },
    { "https://a.b.example.com", "ws.test", LIST(list_wild), true },
    { "https://A.EXAMPLE.com", "ws.test", LIST(list_wild), true },
    { "https://a.example.com:443", "ws.test", LIST(list_wild), true },
    { "https://example.com", "ws.test", LIST(list_wild), false },
    { "https://evil-example.com", "ws.test", LIST(list_wild), false },
    { "https://aexample.com", "ws.test", LIST(list_wild), false },
    { "https://.example.com", "ws.test", LIST(list_wild), false },
    { "https://a..example.com", "ws.test", LIST(list_wild), false },
    { "https://a.example.com.evil.net", "ws.test", LIST(list_wild), false },
    { "https://a.example.comx", "ws.test", LIST(list_wild), false },
    { "http://a.example.com", "ws.test", LIST(list_wild), false },
    { "https://a.example.com:8443", "ws.test", LIST(list_wild), false },
    { "https://*.example.com", "ws.test", LIST(list_wild), false },
    { "https://[::1]", "ws.test", LIST(list_wild), false },
    { "https://a.example.com:8443", "ws.test", LIST(list_wild_port), true },
    { "https://a.example.com", "ws.test", LIST(list_wild_port), false },
    /* other schemes only when listed */
    { "chrome-extension://abcdef", "ws.test", LIST(list_ext), true },
    { "chrome-extension://abcdefg", "ws.test", LIST(list_ext), false },
    { "chrome-extension://abcdef", "abcdef", NONE, false },
    { "http://abcdef", "ws.test", LIST(list_ext), false },
    /* IPv6 entry */
    { "http://[::1]:3000", "ws.test", LIST(list_v6), true },
    { "http://[::1]:3001", "ws.test", LIST(list_v6), false },
    { "http://[::1]", "ws.test", LIST(list_v6), false },
    /* malformed entries allow nothing, not everything */
    { "http://example.com", "ws.test", LIST(list_broken), false },
    { "https://a.example.com", "ws.test", LIST(list_broken), false },
    { "https://app.example.com", "ws.test", LIST(list_broken), false },
    { "https://evil.com", "ws.test", LIST(list_broken), false },
    /* several entries, same host still allowed alongside a list */
    { "http://one.test", "ws.test", LIST(list_many), true },
    { "https://two.test:8443", "ws.test", LIST(list_many), true },
    { "https://two.test", "ws.test", LIST(list_many), false },
    { "null", "ws.test", LIST(list_many), true },
    { "http://ws.test", "ws.test", LIST(list_many), true },
    { "http://three.test", "ws.test", LIST(list_many), false },
};

static void test_origin_policy(void **state)
{
    size_t count = sizeof origin_cases / sizeof origin_cases[0];
    assert_true(count >= 20);
    for (size_t i = 0; i < count; i++) {
        const struct origin_case *c = &origin_cases[i];
        struct handshake_policy policy = { c->allowed, c->allowed_count, NULL, 0, NULL };
        bool got = handshake_origin_allowed(c->origin, strlen(c->origin), c->host,
                                            strlen(c->host), &policy);
        if (got != c->expected)
            fail_msg("origin \"%s\" host \"%s\" (%zu entries): got %s", c->origin, c->host,
                     c->allowed_count, got ? "allowed" : "refused");
    }
}

/* Only the given lengths count: a longer buffer must not leak into the match. */
/* The request's scheme decides what a Host without a port means. */
static void test_origin_and_request_scheme(void **state)
{
    (void)state;
    struct handshake_policy https = { NULL, 0, NULL, 0, "https" };
    struct handshake_policy http = { NULL, 0, NULL, 0, "http" };
    const char *secure = "https://example.com";
    const char *plain = "http://example.com";
    assert_true(handshake_origin_allowed(secure, strlen(secure), "example.com", 11, &https));
    assert_false(handshake_origin_allowed(secure, strlen(secure), "example.com", 11, &http));
    assert_true(handshake_origin_allowed(plain, strlen(plain), "example.com", 11, &http));
    assert_false(handshake_origin_allowed(plain, strlen(plain), "example.com", 11, &https));
    /* an explicit port speaks for itself */
    assert_true(handshake_origin_allowed(secure, strlen(secure), "example.com:443", 15, &http));
    assert_true(handshake_origin_allowed(plain, strlen(plain), "example.com:80", 14, &https));
}

static void test_origin_lengths(void **state)
{
    const char *origin = "http://example.com.evil.net";
    assert_true(handshake_origin_allowed(origin, strlen("http://example.com"), "example.com", 11,
                                         &no_policy));
    assert_false(handshake_origin_allowed(origin, strlen(origin), "example.com.evil.net", 11,
                                          &no_policy));
}

static int choose(const char *offers, const struct handshake_policy *policy,
                  struct handshake_result *result)
{
    char head[1024];
    snprintf(head, sizeof head, "GET / HTTP/1.1\r\nHost: h\r\n" BASE_REST "%s", offers);
    return check_head(head, policy, result);
}

static void test_subprotocol_choice(void **state)
{
    static const char *const server[] = { "chat.v2", "chat", "json" };
    struct handshake_policy policy = { NULL, 0, server, 3, NULL };
    struct handshake_result result;

    /* the server's preference wins over the client's order */
    assert_int_equal(choose("Sec-WebSocket-Protocol: chat, chat.v2\r\n", &policy, &result), 101);
    assert_ptr_equal(result.subprotocol, server[0]);
    assert_int_equal(choose("Sec-WebSocket-Protocol: json, chat\r\n", &policy, &result), 101);
    assert_ptr_equal(result.subprotocol, server[1]);
    /* offers may span several headers */
    assert_int_equal(choose("Sec-WebSocket-Protocol: json\r\nsec-websocket-protocol: chat\r\n",
                            &policy, &result), 101);
    assert_ptr_equal(result.subprotocol, server[1]);
    assert_int_equal(choose("Sec-WebSocket-Protocol:  other ,\tjson \r\n", &policy, &result),
                     101);
    assert_ptr_equal(result.subprotocol, server[2]);
    /* exact, case-sensitive, whole elements */
    assert_int_equal(choose("Sec-WebSocket-Protocol: Chat, CHAT.V2\r\n", &policy, &result), 101);
    assert_null(result.subprotocol);
    assert_int_equal(choose("Sec-WebSocket-Protocol: chat.v2x, cha, chat v2\r\n", &policy,
                            &result), 101);
    assert_null(result.subprotocol);
    /* none offered or none shared is not an error */
    assert_int_equal(choose("", &policy, &result), 101);
    assert_null(result.subprotocol);
    assert_int_equal(choose("Sec-WebSocket-Protocol: mqtt\r\n", &policy, &result), 101);
    assert_null(result.subprotocol);
    assert_int_equal(choose("Sec-WebSocket-Protocol: chat\r\n", &no_policy, &result), 101);
    assert_null(result.subprotocol);
    /* a failed check picks nothing */
    char head[512];
    build_request(FAIL_KEY, head, sizeof head);
    strcat(head, "Sec-WebSocket-Protocol: chat\r\n");
    assert_int_equal(check_head(head, &policy, &result), 400);
    assert_null(result.subprotocol);
}

static void test_accept_key(void **state)
{
    char out[HANDSHAKE_ACCEPT_SIZE];
    assert_true(handshake_accept_key(RFC_KEY, strlen(RFC_KEY), out));
    assert_string_equal(out, RFC_ACCEPT);
    assert_true(handshake_accept_key("AQIDBAUGBwgJCgsMDQ4PEA==", 24, out));
    assert_string_equal(out, "C/0nmHhBztSRGR1CwL6Tf4ZjwpY=");
    /* only key_length bytes are hashed */
    assert_true(handshake_accept_key(RFC_KEY "trailing", strlen(RFC_KEY), out));
    assert_string_equal(out, RFC_ACCEPT);
    char huge[4096];
    memset(huge, 'A', sizeof huge);
    assert_false(handshake_accept_key(huge, sizeof huge, out));
}

static void test_response(void **state)
{
    static const char *const server[] = { "chat" };
    struct handshake_policy policy = { NULL, 0, server, 1, NULL };
    struct handshake_result result;
    char out[512];

    assert_int_equal(choose("", &policy, &result), 101);
    static const char plain[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                "Connection: Upgrade\r\nSec-WebSocket-Accept: " RFC_ACCEPT
                                "\r\n\r\n";
    assert_int_equal(handshake_response(out, sizeof out, &result), (int)strlen(plain));
    assert_string_equal(out, plain);

    assert_int_equal(choose("Sec-WebSocket-Protocol: chat\r\n", &policy, &result), 101);
    static const char with_protocol[] =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\nSec-WebSocket-Protocol: chat\r\n\r\n";
    int n = handshake_response(out, sizeof out, &result);
    assert_int_equal(n, (int)strlen(with_protocol));
    assert_string_equal(out, with_protocol);

    /* too small at every size short of length + NUL */
    for (size_t size = 0; size <= (size_t)n; size++) {
        char *small = malloc(size > 0 ? size : 1);
        assert_non_null(small);
        assert_int_equal(handshake_response(small, size, &result), -1);
        free(small);
    }

    /* no 101 without a successful check */
    struct handshake_result failed;
    build_request(FAIL_ORIGIN, out, sizeof out);
    assert_int_equal(check_head(out, &no_policy, &failed), 403);
    assert_int_equal(handshake_response(out, sizeof out, &failed), -1);
    /* nor with a missing accept value */
    struct handshake_result forged = { 101, "forged", "", NULL };
    assert_int_equal(handshake_response(out, sizeof out, &forged), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_request),
        cmocka_unit_test(test_each_check_status),
        cmocka_unit_test(test_check_order),
        cmocka_unit_test(test_method_and_version),
        cmocka_unit_test(test_host_rules),
        cmocka_unit_test(test_upgrade_and_connection),
        cmocka_unit_test(test_websocket_version),
        cmocka_unit_test(test_websocket_key),
        cmocka_unit_test(test_origin_in_request),
        cmocka_unit_test(test_origin_policy),
        cmocka_unit_test(test_origin_lengths),
        cmocka_unit_test(test_origin_and_request_scheme),
        cmocka_unit_test(test_subprotocol_choice),
        cmocka_unit_test(test_accept_key),
        cmocka_unit_test(test_response),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
