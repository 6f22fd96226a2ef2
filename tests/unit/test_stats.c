/* Unit tests for stats: summing the counters of several workers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "stats.h"

static void count_route(struct stats *stats, const char *path, uint64_t open, uint64_t total)
{
    long index = stats_route_index(stats, path);
    assert_true(index >= 0);
    stats->routes[index].open += open;
    stats->routes[index].total += total;
}

static void test_merge_adds_every_counter_and_matches_routes(void **state)
{
    (void)state;
    struct stats a = { .http_requests = 1, .messages_received = 2, .bytes_received = 3,
                       .messages_published = 4, .deliveries = 5, .bytes_sent = 6,
                       .slow_reader_drops = 7, .rate_limited = 8, .memory_refusals = 9,
                       .subscription_bytes = 10 };
    struct stats b = a;
    a.rejected[STATS_REJECT_LIMIT] = 2;
    b.rejected[STATS_REJECT_LIMIT] = 3;
    b.rejected[STATS_REJECT_AUTH] = 1;
    count_route(&a, "/ws", 2, 5);
    count_route(&b, "/chat/:room", 1, 1);
    count_route(&b, "/ws", 3, 4);

    struct stats total = { 0 };
    assert_int_equal(stats_merge(&total, &a), 0);
    assert_int_equal(stats_merge(&total, &b), 0);
    assert_int_equal(total.http_requests, 2);
    assert_int_equal(total.messages_received, 4);
    assert_int_equal(total.bytes_received, 6);
    assert_int_equal(total.messages_published, 8);
    assert_int_equal(total.deliveries, 10);
    assert_int_equal(total.bytes_sent, 12);
    assert_int_equal(total.slow_reader_drops, 14);
    assert_int_equal(total.rate_limited, 16);
    assert_int_equal(total.memory_refusals, 18);
    assert_int_equal(total.subscription_bytes, 20);
    assert_int_equal(total.rejected[STATS_REJECT_LIMIT], 5);
    assert_int_equal(total.rejected[STATS_REJECT_AUTH], 1);
    assert_int_equal(total.route_count, 2);
    long ws = stats_route_index(&total, "/ws");
    long chat = stats_route_index(&total, "/chat/:room");
    assert_int_equal(total.route_count, 2);   /* found, not added */
    assert_int_equal(total.routes[ws].open, 5);
    assert_int_equal(total.routes[ws].total, 9);
    assert_int_equal(total.routes[chat].open, 1);
    assert_int_equal(total.routes[chat].total, 1);
    stats_free(&a);
    stats_free(&b);
    stats_free(&total);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merge_adds_every_counter_and_matches_routes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
