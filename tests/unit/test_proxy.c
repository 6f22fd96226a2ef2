/* Unit tests for the proxy module: which forwarded address is believed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <cmocka.h>

#include "proxy.h"

static struct netaddr_range trusted_ranges[2];
static struct proxy_config proxy = { trusted_ranges, 2 };

static int setup(void **state)
{
    (void)state;
    assert_int_equal(netaddr_range_parse("127.0.0.1", &trusted_ranges[0]), 0);
    assert_int_equal(netaddr_range_parse("10.0.0.0/8", &trusted_ranges[1]), 0);
    return 0;
}

static struct sockaddr_in ipv4(const char *text)
{
    struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons(1234) };
    assert_int_equal(inet_pton(AF_INET, text, &address.sin_addr), 1);
    return address;
}

static void address_text(const struct sockaddr_storage *address, char *out, size_t size)
{
    if (address->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)address)->sin_addr, out, (socklen_t)size);
    else if (address->ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)address)->sin6_addr, out, (socklen_t)size);
    else
        strcpy(out, "unix");
}

/* Parses head, resolves it for a peer, returns the believed address text. */
static bool resolve(const char *head, const struct sockaddr *peer, char *out, size_t size)
{
    struct http_request request;
    assert_true(http_request_parse(head, strlen(head), 8192, &request) > 0);
    struct sockaddr_storage client;
    bool forwarded = proxy_client_address(&request, peer, &proxy, &client);
    address_text(&client, out, size);
    return forwarded;
}

#define HEAD(extra) "GET / HTTP/1.1\r\nHost: h\r\n" extra "\r\n"

static void test_untrusted_peer_is_never_overridden(void **state)
{
    (void)state;
    struct sockaddr_in peer = ipv4("203.0.113.9");
    char text[64];
    assert_false(resolve(HEAD("X-Forwarded-For: 1.2.3.4\r\nX-Real-IP: 5.6.7.8\r\n"),
                         (struct sockaddr *)&peer, text, sizeof(text)));
    assert_string_equal(text, "203.0.113.9");
}

static void test_rightmost_untrusted_hop_wins(void **state)
{
    (void)state;
    struct sockaddr_in peer = ipv4("127.0.0.1");
    char text[64];
    /* a client may forge the left part; the right-most untrusted entry is
     * the one our own proxies saw */
    assert_true(resolve(HEAD("X-Forwarded-For: 6.6.6.6, 198.51.100.7, 10.1.2.3\r\n"),
                        (struct sockaddr *)&peer, text, sizeof(text)));
    assert_string_equal(text, "198.51.100.7");
}

static void test_several_headers_are_one_list(void **state)
{
    (void)state;
    struct sockaddr_in peer = ipv4("127.0.0.1");
    char text[64];
    assert_true(resolve(HEAD("X-Forwarded-For: 198.51.100.7\r\nX-Forwarded-For: 10.0.0.1\r\n"),
                        (struct sockaddr *)&peer, text, sizeof(text)));
    assert_string_equal(text, "198.51.100.7");
}

static void test_all_trusted_gives_leftmost(void **state)
{
    (void)state;
    struct sockaddr_in peer = ipv4("127.0.0.1");
    char text[64];
    assert_true(resolve(HEAD("X-Forwarded-For: 10.0.0.5, 10.0.0.6\r\n"), (struct sockaddr *)&peer,
                        text, sizeof(text)));
    assert_string_equal(text, "10.0.0.5");
}

static void test_real_ip_and_ports_and_ipv6(void **state)
{
    (void)state;
    struct sockaddr_in peer = ipv4("127.0.0.1");
    char text[64];
    assert_true(resolve(HEAD("X-Real-IP: 192.0.2.1\r\n"), (struct sockaddr *)&peer, text, sizeof(text)));
    assert_string_equal(text, "192.0.2.1");
    assert_true(resolve(HEAD("X-Forwarded-For: 192.0.2.2:5555\r\n"), (struct sockaddr *)&peer, text,
                        sizeof(text)));
    assert_string_equal(text, "192.0.2.2");
    assert_true(resolve(HEAD("X-Forwarded-For: [2001:db8::1]:443\r\n"), (struct sockaddr *)&peer,
                        text, sizeof(text)));
    assert_string_equal(text, "2001:db8::1");
    assert_true(resolve(HEAD("X-Forwarded-For: 2001:db8::2\r\n"), (struct sockaddr *)&peer, text,
                        sizeof(text)));
    assert_string_equal(text, "2001:db8::2");
}

static void test_garbage_falls_back_to_the_peer(void **state)
{
    (void)state;
    struct sockaddr_in peer = ipv4("127.0.0.1");
    char text[64];
    assert_false(resolve(HEAD("X-Forwarded-For: not-an-address\r\nX-Real-IP: 192.0.2.1\r\n"),
                         (struct sockaddr *)&peer, text, sizeof(text)));
    assert_string_equal(text, "127.0.0.1");
    assert_false(resolve(HEAD(""), (struct sockaddr *)&peer, text, sizeof(text)));
    assert_string_equal(text, "127.0.0.1");
}

static void test_unix_peers_are_trusted(void **state)
{
    (void)state;
    struct sockaddr_un peer = { .sun_family = AF_UNIX };
    char text[64];
    assert_true(proxy_peer_trusted((struct sockaddr *)&peer, &proxy));
    assert_true(resolve(HEAD("X-Forwarded-For: 192.0.2.3\r\n"), (struct sockaddr *)&peer, text,
                        sizeof(text)));
    assert_string_equal(text, "192.0.2.3");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_untrusted_peer_is_never_overridden),
        cmocka_unit_test(test_rightmost_untrusted_hop_wins),
        cmocka_unit_test(test_several_headers_are_one_list),
        cmocka_unit_test(test_all_trusted_gives_leftmost),
        cmocka_unit_test(test_real_ip_and_ports_and_ipv6),
        cmocka_unit_test(test_garbage_falls_back_to_the_peer),
        cmocka_unit_test(test_unix_peers_are_trusted),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
