/* Unit tests for the per-connection token bucket (messages_per_second, burst). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "ratelimit.h"

/* How many of count messages sent at now are let through. */
static unsigned take_many(struct ratelimit *bucket, unsigned rate, unsigned burst, int64_t now,
                          unsigned count)
{
    unsigned taken = 0;
    for (unsigned i = 0; i < count; i++)
        taken += ratelimit_take(bucket, rate, burst, now);
    return taken;
}

static void test_burst_then_empty(void **state)
{
    (void)state;
    struct ratelimit bucket;
    ratelimit_init(&bucket, 5, 1000);
    assert_int_equal(take_many(&bucket, 10, 5, 1000, 8), 5);
    assert_false(ratelimit_take(&bucket, 10, 5, 1000));
}

static void test_refills_at_rate(void **state)
{
    (void)state;
    struct ratelimit bucket;
    ratelimit_init(&bucket, 1, 0);
    assert_true(ratelimit_take(&bucket, 10, 1, 0));
    /* 10 per second: one token every 100 ms, not before. */
    assert_false(ratelimit_take(&bucket, 10, 1, 99));
    assert_true(ratelimit_take(&bucket, 10, 1, 100));
    assert_false(ratelimit_take(&bucket, 10, 1, 150));
    assert_true(ratelimit_take(&bucket, 10, 1, 200));
}

/* Refills of a few milliseconds add up instead of rounding to nothing. */
static void test_fractional_refills_accumulate(void **state)
{
    (void)state;
    struct ratelimit bucket;
    ratelimit_init(&bucket, 2, 0);
    assert_int_equal(take_many(&bucket, 3, 2, 0, 2), 2);
    unsigned taken = 0;
    for (int64_t now = 1; now <= 1000; now++)
        taken += ratelimit_take(&bucket, 3, 2, now);
    assert_int_equal(taken, 3);
}

/* A long quiet spell fills the bucket to burst, no further. */
static void test_quiet_spell_caps_at_burst(void **state)
{
    (void)state;
    struct ratelimit bucket;
    ratelimit_init(&bucket, 4, 0);
    assert_int_equal(take_many(&bucket, 1000000, 4, 0, 4), 4);
    int64_t much_later = INT64_C(1) << 50;
    assert_int_equal(take_many(&bucket, 1000000, 4, much_later, 10), 4);
}

/* Sustained sending at twice the rate gets about the rate through. */
static void test_sustained_rate(void **state)
{
    (void)state;
    struct ratelimit bucket;
    ratelimit_init(&bucket, 20, 0);
    unsigned taken = 0;
    for (int64_t now = 0; now < 10000; now += 25)   /* 40 per second for 10 s */
        taken += ratelimit_take(&bucket, 20, 20, now);
    assert_in_range(taken, 200, 220);
}

/* A clock that steps back never adds tokens. */
static void test_clock_backwards(void **state)
{
    (void)state;
    struct ratelimit bucket;
    ratelimit_init(&bucket, 1, 5000);
    assert_true(ratelimit_take(&bucket, 1, 1, 5000));
    assert_false(ratelimit_take(&bucket, 1, 1, 1000));
    assert_false(ratelimit_take(&bucket, 1, 1, 5999));
    assert_true(ratelimit_take(&bucket, 1, 1, 6000));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_empty),
        cmocka_unit_test(test_refills_at_rate),
        cmocka_unit_test(test_fractional_refills_accumulate),
        cmocka_unit_test(test_quiet_spell_caps_at_burst),
        cmocka_unit_test(test_sustained_rate),
        cmocka_unit_test(test_clock_backwards),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
