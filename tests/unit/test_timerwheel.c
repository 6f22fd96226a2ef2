/* Unit tests for the timer wheel: which entries are due when, with the
 * clock passed in (no real time involved). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "timerwheel.h"

#define TICK 100

struct timed {
    struct timer_wheel_entry entry;
    int fired;
};

/* Advances to now and counts what fires; returns how many did. */
static size_t fire_until(struct timer_wheel *wheel, int64_t now)
{
    timer_wheel_advance(wheel, now);
    size_t fired = 0;
    struct timer_wheel_entry *entry;
    while ((entry = timer_wheel_pop(wheel)) != NULL) {
        struct timed *timed = (struct timed *)((char *)entry - offsetof(struct timed, entry));
        assert_true(entry->deadline <= now);
        assert_false(timer_wheel_pending(entry));
        timed->fired++;
        fired++;
    }
    return fired;
}

static void test_fires_at_deadline_not_before(void **state)
{
    (void)state;
    struct timer_wheel wheel;
    struct timed a = { 0 };
    timer_wheel_init(&wheel, TICK, 1000);
    assert_false(timer_wheel_pending(&a.entry));
    timer_wheel_schedule(&wheel, &a.entry, 1250);
    assert_true(timer_wheel_pending(&a.entry));
    assert_int_equal(timer_wheel_count(&wheel), 1);
    assert_int_equal(fire_until(&wheel, 1100), 0);
    assert_int_equal(fire_until(&wheel, 1249), 0);    /* same tick, not yet due */
    assert_int_equal(fire_until(&wheel, 1250), 1);
    assert_int_equal(a.fired, 1);
    assert_int_equal(timer_wheel_count(&wheel), 0);
    assert_int_equal(fire_until(&wheel, 5000), 0);    /* once only */
}

static void test_many_entries_each_fire_once_in_their_tick(void **state)
{
    (void)state;
    struct timer_wheel wheel;
    enum { COUNT = 2000 };
    struct timed *timed = calloc(COUNT, sizeof(*timed));
    assert_non_null(timed);
    timer_wheel_init(&wheel, TICK, 0);
    for (int i = 0; i < COUNT; i++)
        timer_wheel_schedule(&wheel, &timed[i].entry, 37 * i);   /* 74 s: past a revolution */
    int64_t now = 0;
    while (timer_wheel_count(&wheel) > 0 && now < 100000) {
        now += TICK;
        fire_until(&wheel, now);
        for (int i = 0; i < COUNT; i++)
            assert_int_equal(timed[i].fired, 37 * i <= now ? 1 : 0);
    }
    assert_int_equal(timer_wheel_count(&wheel), 0);
    free(timed);
}

static void test_deadlines_beyond_a_revolution_wait_their_turn(void **state)
{
    (void)state;
    struct timer_wheel wheel;
    struct timed near = { 0 }, far = { 0 };
    int64_t revolution = (int64_t)TIMER_WHEEL_SLOTS * TICK;
    timer_wheel_init(&wheel, TICK, 0);
    timer_wheel_schedule(&wheel, &near.entry, 300);
    timer_wheel_schedule(&wheel, &far.entry, 300 + 2 * revolution);   /* same slot */
    for (int64_t now = TICK; now < 300 + 2 * revolution; now += TICK) {
        fire_until(&wheel, now);
        assert_int_equal(near.fired, now >= 300 ? 1 : 0);
        assert_int_equal(far.fired, 0);
    }
    assert_int_equal(fire_until(&wheel, 300 + 2 * revolution), 1);
    assert_int_equal(far.fired, 1);
}

static void test_clock_jump_fires_everything_due(void **state)
{
    (void)state;
    struct timer_wheel wheel;
    struct timed timed[5];
    memset(timed, 0, sizeof(timed));
    int64_t revolution = (int64_t)TIMER_WHEEL_SLOTS * TICK;
    timer_wheel_init(&wheel, TICK, 0);
    timer_wheel_schedule(&wheel, &timed[0].entry, 50);
    timer_wheel_schedule(&wheel, &timed[1].entry, revolution / 2);
    timer_wheel_schedule(&wheel, &timed[2].entry, revolution + 5);
    timer_wheel_schedule(&wheel, &timed[3].entry, 3 * revolution);
    timer_wheel_schedule(&wheel, &timed[4].entry, 3 * revolution + 1);
    /* The loop was away for three revolutions at once. */
    assert_int_equal(fire_until(&wheel, 3 * revolution), 4);
    assert_int_equal(timed[4].fired, 0);
    assert_int_equal(fire_until(&wheel, 3 * revolution + 1), 1);
    for (int i = 0; i < 5; i++)
        assert_int_equal(timed[i].fired, 1);
}

static void test_past_deadline_fires_at_next_advance(void **state)
{
    (void)state;
    struct timer_wheel wheel;
    struct timed a = { 0 }, b = { 0 };
    timer_wheel_init(&wheel, TICK, 0);
    fire_until(&wheel, 10000);
    timer_wheel_schedule(&wheel, &a.entry, 200);      /* long past */
    timer_wheel_schedule(&wheel, &b.entry, 10000);    /* now */
    assert_int_equal(fire_until(&wheel, 10000), 2);
    assert_int_equal(a.fired + b.fired, 2);
}

static void test_cancel_and_reschedule(void **state)
{
    (void)state;
    struct timer_wheel wheel;
    struct timed a = { 0 }, b = { 0 }, c = { 0 };
    timer_wheel_init(&wheel, TICK, 0);
    timer_wheel_schedule(&wheel, &a.entry, 500);
    timer_wheel_schedule(&wheel, &b.entry, 500);
    timer_wheel_schedule(&wheel, &c.entry, 500);
    timer_wheel_cancel(&wheel, &b.entry);
    timer_wheel_cancel(&wheel, &b.entry);                /* harmless twice */
    assert_false(timer_wheel_pending(&b.entry));
    timer_wheel_schedule(&wheel, &c.entry, 900);         /* moved later */
    assert_int_equal(timer_wheel_count(&wheel), 2);
    assert_int_equal(fire_until(&wheel, 600), 1);
    assert_int_equal(a.fired, 1);
    assert_int_equal(b.fired, 0);
    assert_int_equal(c.fired, 0);
    assert_int_equal(fire_until(&wheel, 900), 1);
    assert_int_equal(c.fired, 1);
    assert_int_equal(timer_wheel_count(&wheel), 0);
}

/* What fires may cancel or reschedule entries still on the due list. */
static void test_due_entries_can_be_cancelled_or_moved_while_firing(void **state)
{
    (void)state;
    struct timer_wheel wheel;
    struct timed t[3];
    memset(t, 0, sizeof(t));
    timer_wheel_init(&wheel, TICK, 0);
    for (int i = 0; i < 3; i++)
        timer_wheel_schedule(&wheel, &t[i].entry, 100);
    timer_wheel_advance(&wheel, 100);
    assert_int_equal(timer_wheel_count(&wheel), 3);
    struct timer_wheel_entry *first = timer_wheel_pop(&wheel);
    assert_non_null(first);
    /* The first to fire cancels one of the others and moves the last. */
    struct timer_wheel_entry *others[2];
    int n = 0;
    for (int i = 0; i < 3; i++)
        if (&t[i].entry != first)
            others[n++] = &t[i].entry;
    timer_wheel_cancel(&wheel, others[0]);
    timer_wheel_schedule(&wheel, others[1], 400);
    assert_null(timer_wheel_pop(&wheel));
    assert_int_equal(timer_wheel_count(&wheel), 1);
    assert_int_equal(fire_until(&wheel, 300), 0);
    timer_wheel_advance(&wheel, 400);
    assert_ptr_equal(timer_wheel_pop(&wheel), others[1]);
    assert_int_equal(timer_wheel_count(&wheel), 0);
}

static void test_negative_clock(void **state)
{
    (void)state;
    struct timer_wheel wheel;
    struct timed a = { 0 };
    timer_wheel_init(&wheel, TICK, -1050);
    timer_wheel_schedule(&wheel, &a.entry, -950);
    assert_int_equal(fire_until(&wheel, -960), 0);
    assert_int_equal(fire_until(&wheel, -950), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fires_at_deadline_not_before),
        cmocka_unit_test(test_many_entries_each_fire_once_in_their_tick),
        cmocka_unit_test(test_deadlines_beyond_a_revolution_wait_their_turn),
        cmocka_unit_test(test_clock_jump_fires_everything_due),
        cmocka_unit_test(test_past_deadline_fires_at_next_advance),
        cmocka_unit_test(test_cancel_and_reschedule),
        cmocka_unit_test(test_due_entries_can_be_cancelled_or_moved_while_firing),
        cmocka_unit_test(test_negative_clock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
