/* Unit tests for the hub: channels by name, subscription order, exclusion,
 * channel lifetime and message refcounts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "hub.h"

struct recorder {
    struct hub_subscriber subscriber;
    int id;
    int received;
    struct hub_message *last;
    struct hub *unsubscribe_from;   /* when set, unsubscribes itself on delivery */
    int *order;                     /* shared log of delivery order */
    int *order_length;
};

static void recorder_deliver(struct hub_subscriber *subscriber, struct hub_message *message)
{
    struct recorder *r = (struct recorder *)((char *)subscriber - offsetof(struct recorder, subscriber));
    r->received++;
    r->last = message;
    if (r->order != NULL)
        r->order[(*r->order_length)++] = r->id;
    if (r->unsubscribe_from != NULL)
        hub_unsubscribe(r->unsubscribe_from, subscriber);
}

static void recorder_init(struct recorder *r, int id, int *order, int *order_length)
{
    memset(r, 0, sizeof(*r));
    r->id = id;
    r->subscriber.deliver = recorder_deliver;
    r->order = order;
    r->order_length = order_length;
}

static struct hub_message *message_of(const char *text)
{
    struct hub_message *message = hub_message_new(strlen(text));
    assert_non_null(message);
    memcpy(message->bytes, text, strlen(text));
    return message;
}

static void test_publish_reaches_every_subscriber_in_order(void **state)
{
    (void)state;
    struct hub *hub = hub_new();
    assert_non_null(hub);
    int order[8];
    int order_length = 0;
    struct recorder r[3];
    for (int i = 0; i < 3; i++) {
        recorder_init(&r[i], i, order, &order_length);
        assert_int_equal(hub_subscribe(hub, "room:a", &r[i].subscriber), 0);
    }
    struct hub_message *message = message_of("hello");
    assert_int_equal(hub_publish(hub, "room:a", message, NULL), 3);
    assert_int_equal(order_length, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(order[i], i);
        assert_ptr_equal(r[i].last, message);   /* the same bytes, not a copy */
    }
    hub_message_release(message);
    for (int i = 0; i < 3; i++)
        hub_unsubscribe(hub, &r[i].subscriber);
    hub_free(hub);
}

static void test_channels_are_separate(void **state)
{
    (void)state;
    struct hub *hub = hub_new();
    struct recorder a, b;
    recorder_init(&a, 1, NULL, NULL);
    recorder_init(&b, 2, NULL, NULL);
    assert_int_equal(hub_subscribe(hub, "room:a", &a.subscriber), 0);
    assert_int_equal(hub_subscribe(hub, "room:b", &b.subscriber), 0);
    struct hub_message *message = message_of("x");
    assert_int_equal(hub_publish(hub, "room:a", message, NULL), 1);
    assert_int_equal(hub_publish(hub, "room:c", message, NULL), 0);
    assert_int_equal(a.received, 1);
    assert_int_equal(b.received, 0);
    hub_message_release(message);
    hub_unsubscribe(hub, &a.subscriber);
    hub_unsubscribe(hub, &b.subscriber);
    hub_free(hub);
}

static void test_except_skips_the_sender(void **state)
{
    (void)state;
    struct hub *hub = hub_new();
    struct recorder a, b;
    recorder_init(&a, 1, NULL, NULL);
    recorder_init(&b, 2, NULL, NULL);
    hub_subscribe(hub, "c", &a.subscriber);
    hub_subscribe(hub, "c", &b.subscriber);
    struct hub_message *message = message_of("x");
    assert_int_equal(hub_publish(hub, "c", message, &a.subscriber), 1);
    assert_int_equal(a.received, 0);
    assert_int_equal(b.received, 1);
    hub_message_release(message);
    hub_unsubscribe(hub, &a.subscriber);
    hub_unsubscribe(hub, &b.subscriber);
    hub_free(hub);
}

static void test_empty_channel_is_freed(void **state)
{
    (void)state;
    struct hub *hub = hub_new();
    struct recorder a, b;
    recorder_init(&a, 1, NULL, NULL);
    recorder_init(&b, 2, NULL, NULL);
    hub_subscribe(hub, "c", &a.subscriber);
    hub_subscribe(hub, "c", &b.subscriber);
    assert_int_equal(hub_channel_count(hub), 1);
    assert_int_equal(hub_subscriber_count(hub, "c"), 2);
    hub_unsubscribe(hub, &a.subscriber);
    assert_int_equal(hub_subscriber_count(hub, "c"), 1);
    hub_unsubscribe(hub, &b.subscriber);
    assert_int_equal(hub_channel_count(hub), 0);
    assert_int_equal(hub_subscriber_count(hub, "c"), 0);
    hub_unsubscribe(hub, &b.subscriber);   /* twice is harmless */
    hub_free(hub);
}

static void test_subscriber_may_leave_during_delivery(void **state)
{
    (void)state;
    struct hub *hub = hub_new();
    int order[8];
    int order_length = 0;
    struct recorder r[3];
    for (int i = 0; i < 3; i++) {
        recorder_init(&r[i], i, order, &order_length);
        r[i].unsubscribe_from = hub;   /* every one leaves as it is served */
        hub_subscribe(hub, "c", &r[i].subscriber);
    }
    struct hub_message *message = message_of("x");
    assert_int_equal(hub_publish(hub, "c", message, NULL), 3);
    assert_int_equal(order_length, 3);
    assert_int_equal(hub_channel_count(hub), 0);
    hub_message_release(message);
    hub_free(hub);
}

static void test_many_channels_grow_the_table(void **state)
{
    (void)state;
    struct hub *hub = hub_new();
    enum { COUNT = 1000 };
    static struct recorder r[COUNT];
    char name[32];
    for (int i = 0; i < COUNT; i++) {
        recorder_init(&r[i], i, NULL, NULL);
        snprintf(name, sizeof(name), "channel:%d", i);
        assert_int_equal(hub_subscribe(hub, name, &r[i].subscriber), 0);
    }
    assert_int_equal(hub_channel_count(hub), COUNT);
    struct hub_message *message = message_of("x");
    for (int i = 0; i < COUNT; i++) {
        snprintf(name, sizeof(name), "channel:%d", i);
        assert_int_equal(hub_publish(hub, name, message, NULL), 1);
        assert_int_equal(r[i].received, 1);
    }
    hub_message_release(message);
    for (int i = 0; i < COUNT; i++)
        hub_unsubscribe(hub, &r[i].subscriber);
    assert_int_equal(hub_channel_count(hub), 0);
    hub_free(hub);
}

static void test_message_refcount(void **state)
{
    (void)state;
    struct hub_message *message = hub_message_new(4);
    assert_non_null(message);
    assert_int_equal(message->refcount, 1);
    assert_int_equal(message->length, 4);
    assert_ptr_equal(hub_message_retain(message), message);
    assert_int_equal(message->refcount, 2);
    hub_message_release(message);
    assert_int_equal(message->refcount, 1);
    hub_message_release(message);   /* freed: ASan would report a leak otherwise */
    hub_message_release(NULL);
    assert_null(hub_message_new(SIZE_MAX));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_publish_reaches_every_subscriber_in_order),
        cmocka_unit_test(test_channels_are_separate),
        cmocka_unit_test(test_except_skips_the_sender),
        cmocka_unit_test(test_empty_channel_is_freed),
        cmocka_unit_test(test_subscriber_may_leave_during_delivery),
        cmocka_unit_test(test_many_channels_grow_the_table),
        cmocka_unit_test(test_message_refcount),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
