/* Unit tests for per-address connection counts (max_connections_per_ip). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include "addrcount.h"

static struct addrcount_key key_of_text(const char *text)
{
    struct sockaddr_storage storage;
    memset(&storage, 0, sizeof(storage));
    if (strchr(text, ':') != NULL) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&storage;
        in6->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, text, &in6->sin6_addr), 1);
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&storage;
        in->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, text, &in->sin_addr), 1);
    }
    struct addrcount_key key;
    assert_true(addrcount_key_of((struct sockaddr *)&storage, &key));
    return key;
}

static void test_counts_up_and_down(void **state)
{
    (void)state;
    struct addrcount *table = addrcount_new();
    assert_non_null(table);
    struct addrcount_key a = key_of_text("192.0.2.1");
    struct addrcount_key b = key_of_text("192.0.2.2");
    assert_int_equal(addrcount_add(table, &a), 1);
    assert_int_equal(addrcount_add(table, &a), 2);
    assert_int_equal(addrcount_add(table, &b), 1);
    assert_int_equal(addrcount_get(table, &a), 2);
    assert_int_equal(addrcount_addresses(table), 2);
    addrcount_remove(table, &a);
    assert_int_equal(addrcount_get(table, &a), 1);
    addrcount_remove(table, &a);
    assert_int_equal(addrcount_get(table, &a), 0);
    assert_int_equal(addrcount_addresses(table), 1);
    /* Removing what is not there changes nothing. */
    addrcount_remove(table, &a);
    assert_int_equal(addrcount_get(table, &b), 1);
    addrcount_free(table);
}

static void test_admit_under_a_limit(void **state)
{
    (void)state;
    struct addrcount *table = addrcount_new();
    assert_non_null(table);
    struct addrcount_key key = key_of_text("192.0.2.9");
    bool counted = false;
    assert_true(addrcount_admit(table, &key, 2, &counted));
    assert_true(counted);
    assert_true(addrcount_admit(table, &key, 2, &counted));
    /* The third is over the limit, and counted all the same: the caller
     * removes it when that connection goes. */
    counted = false;
    assert_false(addrcount_admit(table, &key, 2, &counted));
    assert_true(counted);
    assert_int_equal(addrcount_get(table, &key), 3);
    /* No limit: always admitted. */
    assert_true(addrcount_admit(table, &key, 0, &counted));
    assert_int_equal(addrcount_get(table, &key), 4);
    addrcount_free(table);
}

static void test_ipv6_counts_by_64(void **state)
{
    (void)state;
    struct addrcount *table = addrcount_new();
    assert_non_null(table);
    struct addrcount_key one = key_of_text("2001:db8:1:2::1");
    struct addrcount_key two = key_of_text("2001:db8:1:2:ffff:ffff:ffff:ffff");
    struct addrcount_key other = key_of_text("2001:db8:1:3::1");
    assert_int_equal(addrcount_add(table, &one), 1);
    assert_int_equal(addrcount_add(table, &two), 2);
    assert_int_equal(addrcount_add(table, &other), 1);
    addrcount_free(table);
}

static void test_mapped_ipv4_is_ipv4(void **state)
{
    (void)state;
    struct addrcount *table = addrcount_new();
    assert_non_null(table);
    struct addrcount_key plain = key_of_text("198.51.100.7");
    struct addrcount_key mapped = key_of_text("::ffff:198.51.100.7");
    assert_int_equal(addrcount_add(table, &plain), 1);
    assert_int_equal(addrcount_add(table, &mapped), 2);
    /* An IPv6 /64 whose first bytes look like an IPv4 address is not it. */
    struct addrcount_key lookalike = key_of_text("c633:6407::");
    assert_int_equal(addrcount_get(table, &lookalike), 0);
    addrcount_free(table);
}

static void test_unix_peer_has_no_key(void **state)
{
    (void)state;
    struct sockaddr_un un;
    memset(&un, 0, sizeof(un));
    un.sun_family = AF_UNIX;
    struct addrcount_key key;
    assert_false(addrcount_key_of((struct sockaddr *)&un, &key));
}

/* Many addresses: the table grows and every count stays right. */
static void test_many_addresses(void **state)
{
    (void)state;
    struct addrcount *table = addrcount_new();
    assert_non_null(table);
    char text[32];
    for (unsigned i = 0; i < 5000; i++) {
        snprintf(text, sizeof(text), "10.%u.%u.%u", i >> 16, (i >> 8) & 255, i & 255);
        struct addrcount_key key = key_of_text(text);
        assert_int_equal(addrcount_add(table, &key), 1);
        if (i % 3 == 0)
            assert_int_equal(addrcount_add(table, &key), 2);
    }
    assert_int_equal(addrcount_addresses(table), 5000);
    for (unsigned i = 0; i < 5000; i++) {
        snprintf(text, sizeof(text), "10.%u.%u.%u", i >> 16, (i >> 8) & 255, i & 255);
        struct addrcount_key key = key_of_text(text);
        assert_int_equal(addrcount_get(table, &key), i % 3 == 0 ? 2 : 1);
        addrcount_remove(table, &key);
    }
    assert_int_equal(addrcount_addresses(table), 5000 / 3 + 1);
    addrcount_free(table);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_up_and_down),
        cmocka_unit_test(test_admit_under_a_limit),
        cmocka_unit_test(test_ipv6_counts_by_64),
        cmocka_unit_test(test_mapped_ipv4_is_ipv4),
        cmocka_unit_test(test_unix_peer_has_no_key),
        cmocka_unit_test(test_many_addresses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
