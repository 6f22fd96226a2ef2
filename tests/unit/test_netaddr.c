/* Unit tests for address ranges (CIDR) used by allow-lists. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include "netaddr.h"

/* A peer address as accept() would report it. */
struct peer {
    struct sockaddr_storage storage;
};

static const struct sockaddr *peer_of(struct peer *peer, const char *text)
{
    memset(peer, 0, sizeof *peer);
    struct sockaddr_in *in4 = (struct sockaddr_in *)&peer->storage;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&peer->storage;
    if (inet_pton(AF_INET, text, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(40000);
    } else if (inet_pton(AF_INET6, text, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(40000);
    } else {
        fail_msg("bad test address %s", text);
    }
    return (const struct sockaddr *)&peer->storage;
}

static struct netaddr_range range_of(const char *text)
{
    struct netaddr_range range;
    if (netaddr_range_parse(text, &range) != 0)
        fail_msg("expected \"%s\" to parse", text);
    return range;
}

static bool contains(const char *range_text, const char *peer_text)
{
    struct netaddr_range range = range_of(range_text);
    struct peer peer;
    return netaddr_range_contains(&range, peer_of(&peer, peer_text));
}

static void test_parse_ipv4(void **state)
{
    (void)state;
    struct netaddr_range range = range_of("127.0.0.0/8");
    assert_int_equal(range.family, AF_INET);
    assert_int_equal(range.prefix_length, 8);
    const uint8_t expected[16] = { 127, 0, 0, 0 };
    assert_memory_equal(range.address, expected, 16);

    range = range_of("10.1.2.3");
    assert_int_equal(range.family, AF_INET);
    assert_int_equal(range.prefix_length, 32);
    const uint8_t single[16] = { 10, 1, 2, 3 };
    assert_memory_equal(range.address, single, 16);

    range = range_of("10.1.2.3/32");
    assert_int_equal(range.prefix_length, 32);
    range = range_of("0.0.0.0/0");
    assert_int_equal(range.prefix_length, 0);
}

static void test_parse_ipv6(void **state)
{
    (void)state;
    struct netaddr_range range = range_of("::1");
    assert_int_equal(range.family, AF_INET6);
    assert_int_equal(range.prefix_length, 128);
    uint8_t expected[16] = { 0 };
    expected[15] = 1;
    assert_memory_equal(range.address, expected, 16);

    range = range_of("fd00::/8");
    assert_int_equal(range.family, AF_INET6);
    assert_int_equal(range.prefix_length, 8);
    assert_int_equal(range.address[0], 0xfd);

    range = range_of("2001:db8::/32");
    assert_int_equal(range.prefix_length, 32);
    range = range_of("::/0");
    assert_int_equal(range.prefix_length, 0);
    range = range_of("::ffff:10.0.0.0/104");
    assert_int_equal(range.family, AF_INET6);
    assert_int_equal(range.prefix_length, 104);
}

static void test_parse_rejects_host_bits(void **state)
{
    (void)state;
    struct netaddr_range range;
    assert_int_equal(netaddr_range_parse("127.0.0.1/8", &range), -1);
    assert_int_equal(netaddr_range_parse("10.0.0.128/24", &range), -1);
    assert_int_equal(netaddr_range_parse("10.0.0.1/31", &range), -1);
    assert_int_equal(netaddr_range_parse("1.0.0.0/0", &range), -1);
    assert_int_equal(netaddr_range_parse("::1/127", &range), -1);
    assert_int_equal(netaddr_range_parse("fd00::1/64", &range), -1);
    assert_int_equal(netaddr_range_parse("fd80::/8", &range), -1);
    /* The last bit inside the prefix is not a host bit. */
    assert_int_equal(netaddr_range_parse("10.0.0.2/31", &range), 0);
    assert_int_equal(netaddr_range_parse("fd80::/9", &range), 0);
}

static void test_parse_rejects_prefix_out_of_range(void **state)
{
    (void)state;
    struct netaddr_range range;
    assert_int_equal(netaddr_range_parse("10.0.0.0/33", &range), -1);
    assert_int_equal(netaddr_range_parse("10.0.0.0/320", &range), -1);
    assert_int_equal(netaddr_range_parse("::/129", &range), -1);
    assert_int_equal(netaddr_range_parse("::/4294967296", &range), -1);
    assert_int_equal(netaddr_range_parse("::/99999999999999999999999", &range), -1);
    assert_int_equal(netaddr_range_parse("::/128", &range), 0);
    assert_int_equal(netaddr_range_parse("10.0.0.0/32", &range), 0);
}

static void test_parse_rejects_garbage(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", "/", "/8", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/+8", "10.0.0.0/ 8",
        "10.0.0.0/8 ", " 10.0.0.0/8", "10.0.0.0/8/8", "10.0.0.0/08", "10.0.0.0/0x8",
        "10.0.0.0/8a", "10.0.0", "10.0.0.0.0", "256.0.0.0", "localhost", "::1::",
        "fe80::1%eth0", "::1/", "1:2:3:4:5:6:7:8:9", "10.0.0.0//8",
        "0000:0000:0000:0000:0000:0000:0000:0000:0000/0",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct netaddr_range range;
        memset(&range, 0x5a, sizeof range);
        if (netaddr_range_parse(bad[i], &range) != -1)
            fail_msg("\"%s\" parsed", bad[i]);
        /* A failed parse leaves the range as it was. */
        assert_int_equal(range.prefix_length, 0x5a5a5a5au);
    }
    struct netaddr_range range;
    assert_int_equal(netaddr_range_parse(NULL, &range), -1);
    assert_int_equal(netaddr_range_parse("10.0.0.0/8", NULL), -1);
}

static void test_contains_ipv4(void **state)
{
    (void)state;
    assert_true(contains("127.0.0.0/8", "127.0.0.1"));
    assert_true(contains("127.0.0.0/8", "127.255.255.255"));
    assert_false(contains("127.0.0.0/8", "128.0.0.1"));
    assert_false(contains("127.0.0.0/8", "126.255.255.255"));
    assert_true(contains("10.1.2.3", "10.1.2.3"));
    assert_false(contains("10.1.2.3", "10.1.2.4"));
    assert_true(contains("192.168.4.0/22", "192.168.7.200"));
    assert_false(contains("192.168.4.0/22", "192.168.8.0"));
    assert_false(contains("192.168.4.0/22", "192.168.3.255"));
    assert_true(contains("10.0.0.2/31", "10.0.0.3"));
    assert_false(contains("10.0.0.2/31", "10.0.0.4"));
}

static void test_contains_ipv6(void **state)
{
    (void)state;
    assert_true(contains("::1", "::1"));
    assert_false(contains("::1", "::2"));
    assert_true(contains("fd00::/8", "fdff:1234::5"));
    assert_false(contains("fd00::/8", "fe00::1"));
    assert_true(contains("2001:db8::/33", "2001:db8:7fff::1"));
    assert_false(contains("2001:db8::/33", "2001:db8:8000::1"));
    assert_true(contains("fd80::/9", "fdff::1"));
    assert_false(contains("fd80::/9", "fd7f::1"));
}

static void test_prefix_zero(void **state)
{
    (void)state;
    assert_true(contains("0.0.0.0/0", "0.0.0.0"));
    assert_true(contains("0.0.0.0/0", "255.255.255.255"));
    assert_true(contains("::/0", "::"));
    assert_true(contains("::/0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
    /* Each family's "everything" stays within its family. */
    assert_false(contains("0.0.0.0/0", "::1"));
    assert_false(contains("::/0", "10.0.0.1"));
}

static void test_families_do_not_mix(void **state)
{
    (void)state;
    assert_false(contains("127.0.0.0/8", "::1"));
    assert_false(contains("::1", "127.0.0.1"));
    /* ::7f00:1 (IPv4-compatible, deprecated) is not an IPv4 peer. */
    assert_false(contains("127.0.0.0/8", "::127.0.0.1"));
}

static void test_mapped_peer_matches_ipv4(void **state)
{
    (void)state;
    assert_true(contains("127.0.0.0/8", "::ffff:127.0.0.1"));
    assert_true(contains("10.1.2.3", "::ffff:10.1.2.3"));
    assert_false(contains("127.0.0.0/8", "::ffff:128.0.0.1"));
    assert_true(contains("0.0.0.0/0", "::ffff:1.2.3.4"));
    /* A mapped peer is an IPv4 peer, not an IPv6 one. */
    assert_false(contains("::/0", "::ffff:1.2.3.4"));
    assert_false(contains("::1", "::ffff:0.0.0.1"));
}

static void test_mapped_range_matches_ipv4(void **state)
{
    (void)state;
    assert_true(contains("::ffff:10.0.0.0/104", "10.9.8.7"));
    assert_true(contains("::ffff:10.0.0.0/104", "::ffff:10.9.8.7"));
    assert_false(contains("::ffff:10.0.0.0/104", "11.0.0.1"));
    assert_true(contains("::ffff:127.0.0.1", "127.0.0.1"));
    assert_true(contains("::ffff:0.0.0.0/96", "8.8.8.8"));
    /* Shorter than /96 the range is an IPv6 one, like ::/0: mapped
     * peers are IPv4 peers and stay outside it. */
    assert_false(contains("::fffe:0.0.0.0/95", "8.8.8.8"));
    assert_false(contains("::fffe:0.0.0.0/95", "::ffff:8.8.8.8"));
    assert_true(contains("::fffe:0.0.0.0/95", "::fffe:1.2.3.4"));
}

static void test_contains_other_families(void **state)
{
    (void)state;
    struct netaddr_range range = range_of("0.0.0.0/0");
    struct sockaddr_un un;
    memset(&un, 0, sizeof un);
    un.sun_family = AF_UNIX;
    assert_false(netaddr_range_contains(&range, (const struct sockaddr *)&un));
    assert_false(netaddr_range_contains(&range, NULL));
    struct peer peer;
    assert_false(netaddr_range_contains(NULL, peer_of(&peer, "1.2.3.4")));
    /* A range that did not come from the parser fails closed. */
    range.prefix_length = 33;
    assert_false(netaddr_range_contains(&range, peer_of(&peer, "1.2.3.4")));
    range.family = AF_UNIX;
    range.prefix_length = 0;
    assert_false(netaddr_range_contains(&range, peer_of(&peer, "1.2.3.4")));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_ipv4),
        cmocka_unit_test(test_parse_ipv6),
        cmocka_unit_test(test_parse_rejects_host_bits),
        cmocka_unit_test(test_parse_rejects_prefix_out_of_range),
        cmocka_unit_test(test_parse_rejects_garbage),
        cmocka_unit_test(test_contains_ipv4),
        cmocka_unit_test(test_contains_ipv6),
        cmocka_unit_test(test_prefix_zero),
        cmocka_unit_test(test_families_do_not_mix),
        cmocka_unit_test(test_mapped_peer_matches_ipv4),
        cmocka_unit_test(test_mapped_range_matches_ipv4),
        cmocka_unit_test(test_contains_other_families),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
