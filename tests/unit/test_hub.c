/* Unit tests for the hub: subscription order, exclusion, seq numbering,
 * the history ring and resume positions, ttl expiry, presence counting and
 * channel lifetime (with epochs). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "hub.h"

#define MAX_SEEN 64

struct recorder {
    struct hub_subscriber subscriber;
    int id;
    uint64_t seen[MAX_SEEN];          /* seqs delivered, in order */
    int seen_count;
    char events[8][128];              /* presence frames' JSON text */
    int event_count;
    struct hub *unsubscribe_from;     /* when set, leaves on delivery */
    int *order;
    int *order_length;
};

static struct recorder *recorder_of(struct hub_subscriber *subscriber)
{
    return (struct recorder *)((char *)subscriber - offsetof(struct recorder, subscriber));
}

static void recorder_deliver(struct hub_subscriber *subscriber, struct message *message)
{
    struct recorder *r = recorder_of(subscriber);
    if (r->seen_count < MAX_SEEN)
        r->seen[r->seen_count++] = message->seq;
    if (r->order != NULL)
        r->order[(*r->order_length)++] = r->id;
    if (r->unsubscribe_from != NULL)
        hub_unsubscribe(r->unsubscribe_from, subscriber);
}

static void recorder_event(struct hub_subscriber *subscriber, struct shared_frame *frame)
{
    struct recorder *r = recorder_of(subscriber);
    /* a short unmasked text frame: 2-byte header, then the JSON */
    assert_true(frame->length > 2 && frame->length - 2 < sizeof(r->events[0]));
    assert_true(r->event_count < 8);
    memcpy(r->events[r->event_count], frame->bytes + 2, frame->length - 2);
    r->events[r->event_count][frame->length - 2] = '\0';
    r->event_count++;
}

static void recorder_init(struct recorder *r, int id, const char *user)
{
    memset(r, 0, sizeof(*r));
    r->id = id;
    r->subscriber.deliver = recorder_deliver;
    r->subscriber.deliver_event = recorder_event;
    r->subscriber.user = user;
    r->subscriber.presence_events = true;
}

static const struct channel_rule plain = { .match = "*" };
static const struct channel_rule held = { .match = "*", .history = 3 };
static const struct channel_rule aging = { .match = "*", .history = 10, .history_ttl = 5 };
static const struct channel_rule with_presence = { .match = "*", .presence = true };

static long publish(struct hub *hub, const char *channel, const struct channel_rule *rule,
                    const struct hub_subscriber *except, int64_t now)
{
    struct message *message = message_new(MESSAGE_TEXT, channel, NULL, "x", 1);
    assert_non_null(message);
    long deliveries = hub_publish(hub, message, rule, except, now, NULL);
    message_release(message);
    return deliveries;
}

static void test_publish_reaches_every_subscriber_in_order(void **state)
{
    (void)state;
    struct hub *hub = hub_new();
    int order[8];
    int order_length = 0;
    struct recorder r[3];
    for (int i = 0; i < 3; i++) {
        recorder_init(&r[i], i, NULL);
        r[i].order = order;
        r[i].order_length = &order_length;
        assert_int_equal(hub_subscribe(hub, "room:a", &plain, &r[i].subscriber), 0);
    }
    assert_int_equal(publish(hub, "room:a", &plain, NULL, 0), 3);
    assert_int_equal(order_length, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(order[i], i);
    assert_int_equal(publish(hub, "room:a", &plain, &r[1].subscriber, 0), 2);
    assert_int_equal(r[1].seen_count, 1);
    assert_int_equal(r[0].seen_count, 2);
    assert_int_equal(publish(hub, "room:b", &plain, NULL, 0), 0);
    for (int i = 0; i < 3; i++)
        hub_unsubscribe(hub, &r[i].subscriber);
    hub_free(hub);
}

static void test_seq_grows_per_channel(void **state)
{
    (void)state;
    struct hub *hub = hub_new();
    struct recorder a, b;
    recorder_init(&a, 1, NULL);
    recorder_init(&b, 2, NULL);
    hub_subscribe(hub, "a", &plain, &a.subscriber);
    hub_subscribe(hub, "b", &plain, &b.subscriber);
    publish(hub, "a", &plain, NULL, 0);
    publish(hub, "a", &plain, NULL, 0);
    publish(hub, "b", &plain, NULL, 0);
    assert_int_equal(a.seen_count, 2);
    assert_int_equal(a.seen[0], 1);
    assert_int_equal(a.seen[1], 2);
    assert_int_equal(b.seen[0], 1);
    hub_unsubscribe(hub, &a.subscriber);
    hub_unsubscribe(hub, &b.subscriber);
    hub_free(hub);
}

static void test_idle_channel_is_freed_and_gets_a_new_epoch(void **state)
{
    (void)state;
    struct hub *hub = hub_new();
    struct recorder a;
    recorder_init(&a, 1, NULL);
    hub_subscribe(hub, "c", &plain, &a.subscriber);
    struct hub_channel_info info;
    assert_true(hub_channel_info(hub, "c", &info));
    char first_epoch[HUB_EPOCH_SIZE];
    snprintf(first_epoch, sizeof(first_epoch), "%s", info.epoch);
    publish(hub, "c", &plain, NULL, 0);
    hub_unsubscribe(hub, &a.subscriber);
    assert_false(hub_channel_info(hub, "c", &info));
    struct hub_stats stats;
    hub_stats(hub, &stats);
    assert_int_equal(stats.channels, 0);
    assert_int_equal(stats.subscriptions, 0);
    hub_subscribe(hub, "c", &plain, &a.subscriber);
    assert_true(hub_channel_info(hub, "c", &info));
    assert_int_equal(info.seq, 0);
    assert_string_not_equal(info.epoch, first_epoch);
    hub_unsubscribe(hub, &a.subscriber);
    hub_free(hub);
}

static void test_history_ring_keeps_the_last_messages(void **state)
{
    (void)state;
    struct hub *hub = hub_new();
    for (int i = 0; i < 5; i++)
        publish(hub, "h", &held, NULL, 0);   /* nobody listens: held anyway */
    struct hub_channel_info info;
    assert_true(hub_channel_info(hub, "h", &info));
    assert_int_equal(info.seq, 5);
    struct recorder r;
    recorder_init(&r, 1, NULL);
    hub_subscribe(hub, "h", &held, &r.subscriber);
    struct hub_position position;
    /* seqs 3,4,5 are held: since 2 is fully recovered */
    hub_position(hub, &r.subscriber, true, 2, NULL, 0, &position);
    assert_true(position.recovered);
    assert_int_equal(position.seq, 5);
    hub_replay(hub, &r.subscriber, position.replay_after, 0);
    assert_int_equal(r.seen_count, 3);
    assert_int_equal(r.seen[0], 3);
    assert_int_equal(r.seen[2], 5);
    /* since 1: seq 2 is gone, replay what is held */
    r.seen_count = 0;
    hub_position(hub, &r.subscriber, true, 1, NULL, 0, &position);
    assert_false(position.recovered);
    hub_replay(hub, &r.subscriber, position.replay_after, 0);
    assert_int_equal(r.seen_count, 3);
    /* up to date: nothing to replay, recovered */
    r.seen_count = 0;
    hub_position(hub, &r.subscriber, true, 5, NULL, 0, &position);
    assert_true(position.recovered);
    hub_replay(hub, &r.subscriber, position.replay_after, 0);
    assert_int_equal(r.seen_count, 0);
    /* another epoch: everything held, not recovered */
    hub_position(hub, &r.subscriber, true, 4, "other-epoch", 0, &position);
    assert_false(position.recovered);
    assert_int_equal(position.replay_after, 0);
    /* no since: no replay */
    hub_position(hub, &r.subscriber, false, 0, NULL, 0, &position);
    assert_int_equal(position.replay_after, 5);
    hub_unsubscribe(hub, &r.subscriber);
    /* history keeps the channel alive without subscribers */
    assert_true(hub_channel_info(hub, "h", &info));
    hub_free(hub);   /* frees held messages: ASan reports leaks otherwise */
}

static void test_history_ttl_expires_and_frees_idle_channels(void **state)
{
    (void)state;
    struct hub *hub = hub_new();
    /* times in milliseconds; the rule's ttl is 5 s */
    publish(hub, "t", &aging, NULL, 100000);
    publish(hub, "t", &aging, NULL, 103000);
    hub_expire(hub, 104999);
    struct hub_channel_info info;
    assert_true(hub_channel_info(hub, "t", &info));
    struct recorder r;
    recorder_init(&r, 1, NULL);
    hub_subscribe(hub, "t", &aging, &r.subscriber);
    struct hub_position position;
    hub_position(hub, &r.subscriber, true, 0, NULL, 105000, &position);   /* seq 1 expired at 105 s */
    assert_false(position.recovered);
    hub_replay(hub, &r.subscriber, position.replay_after, 105000);
    assert_int_equal(r.seen_count, 1);
    assert_int_equal(r.seen[0], 2);
    hub_unsubscribe(hub, &r.subscriber);
    hub_expire(hub, 108000);
    assert_false(hub_channel_info(hub, "t", &info));
    hub_free(hub);
}

static void test_presence_counts_users_not_connections(void **state)
{
    (void)state;
    struct hub *hub = hub_new();
    struct recorder alice1, alice2, bob;
    recorder_init(&alice1, 1, "alice");
    recorder_init(&alice2, 2, "alice");
    recorder_init(&bob, 3, "bob");
    assert_int_equal(hub_subscribe(hub, "p", &with_presence, &alice1.subscriber), 1);
    hub_announce_join(hub, &alice1.subscriber);
    assert_int_equal(hub_subscribe(hub, "p", &with_presence, &alice2.subscriber), 0);
    assert_int_equal(hub_subscribe(hub, "p", &with_presence, &bob.subscriber), 1);
    hub_announce_join(hub, &bob.subscriber);
    assert_int_equal(alice1.event_count, 2);
    assert_string_equal(alice1.events[0], "{\"op\":\"join\",\"channel\":\"p\",\"user\":\"alice\"}");
    assert_string_equal(alice1.events[1], "{\"op\":\"join\",\"channel\":\"p\",\"user\":\"bob\"}");
    assert_int_equal(bob.event_count, 1);   /* its own join */
    hub_unsubscribe(hub, &alice1.subscriber);   /* alice still has a connection */
    assert_int_equal(bob.event_count, 1);
    hub_unsubscribe(hub, &alice2.subscriber);   /* now alice leaves, and hears it */
    assert_int_equal(bob.event_count, 2);
    assert_string_equal(bob.events[1], "{\"op\":\"leave\",\"channel\":\"p\",\"user\":\"alice\"}");
    /* alice2 came after alice's join: it heard bob's join and the leave */
    assert_int_equal(alice2.event_count, 2);
    assert_string_equal(alice2.events[1], bob.events[1]);
    hub_unsubscribe(hub, &bob.subscriber);
    hub_free(hub);
}

static void collect_user(const char *user, void *arg)
{
    char *out = arg;
    strcat(out, user);
    strcat(out, ",");
}

static void test_presence_list_is_sorted(void **state)
{
    (void)state;
    struct hub *hub = hub_new();
    const char *names[] = { "carol", "alice", "bob", "alice" };
    struct recorder r[4];
    for (int i = 0; i < 4; i++) {
        recorder_init(&r[i], i, names[i]);
        assert_true(hub_subscribe(hub, "p", &with_presence, &r[i].subscriber) >= 0);
    }
    char users[64] = "";
    hub_each_user(hub, "p", collect_user, users);
    assert_string_equal(users, "alice,bob,carol,");
    for (int i = 0; i < 4; i++)
        hub_unsubscribe(hub, &r[i].subscriber);
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
        recorder_init(&r[i], i, NULL);
        r[i].order = order;
        r[i].order_length = &order_length;
        r[i].unsubscribe_from = hub;
        hub_subscribe(hub, "c", &plain, &r[i].subscriber);
    }
    assert_int_equal(publish(hub, "c", &plain, NULL, 0), 3);
    assert_int_equal(order_length, 3);
    struct hub_stats stats;
    hub_stats(hub, &stats);
    assert_int_equal(stats.channels, 0);
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
        recorder_init(&r[i], i, NULL);
        snprintf(name, sizeof(name), "channel:%d", i);
        assert_int_equal(hub_subscribe(hub, name, &plain, &r[i].subscriber), 0);
    }
    struct hub_stats stats;
    hub_stats(hub, &stats);
    assert_int_equal(stats.channels, COUNT);
    for (int i = 0; i < COUNT; i++) {
        snprintf(name, sizeof(name), "channel:%d", i);
        assert_int_equal(publish(hub, name, &plain, NULL, 0), 1);
        assert_int_equal(r[i].seen_count, 1);
    }
    for (int i = 0; i < COUNT; i++)
        hub_unsubscribe(hub, &r[i].subscriber);
    hub_stats(hub, &stats);
    assert_int_equal(stats.channels, 0);
    hub_free(hub);
}

/* ---- a shared hub: deliveries are handed to workers' queues ---- */

#define MAX_QUEUED 32

struct queues {
    struct hub_item items[2][MAX_QUEUED];
    int count[2];
    bool refuse;                      /* the post fails (out of memory) */
};

static bool queue_post(void *arg, unsigned worker, const struct hub_item *item)
{
    struct queues *queues = arg;
    assert_true(worker < 2 && queues->count[worker] < MAX_QUEUED);
    if (queues->refuse)
        return false;
    queues->items[worker][queues->count[worker]++] = *item;
    return true;
}

/* Delivers worker's queue in order, as its thread would. */
static void queue_drain(struct hub *hub, struct queues *queues, unsigned worker)
{
    for (int i = 0; i < queues->count[worker]; i++)
        hub_deliver_item(hub, worker, &queues->items[worker][i]);
    queues->count[worker] = 0;
}

static void shared_init(struct recorder *r, int id, const char *user, unsigned worker)
{
    recorder_init(r, id, user);
    r->subscriber.worker = worker;
}

static void test_shared_hub_queues_one_item_per_worker_with_subscribers(void **state)
{
    (void)state;
    struct queues queues = { 0 };
    struct hub *hub = hub_new_shared(2, queue_post, &queues);
    assert_non_null(hub);
    assert_false(hub_is_direct(hub));
    struct recorder r[3];
    shared_init(&r[0], 0, NULL, 0);
    shared_init(&r[1], 1, NULL, 1);
    shared_init(&r[2], 2, NULL, 1);
    for (int i = 0; i < 3; i++)
        assert_int_equal(hub_subscribe(hub, "c", &plain, &r[i].subscriber), 0);
    /* Nothing is delivered at publish time; worker 1 gets one item for two. */
    assert_int_equal(publish(hub, "c", &plain, &r[2].subscriber, 0), 2);
    assert_int_equal(publish(hub, "c", &plain, NULL, 0), 3);
    assert_int_equal(r[0].seen_count + r[1].seen_count + r[2].seen_count, 0);
    assert_int_equal(queues.count[0], 2);
    assert_int_equal(queues.count[1], 2);
    queue_drain(hub, &queues, 1);
    queue_drain(hub, &queues, 0);
    assert_int_equal(r[0].seen_count, 2);
    assert_int_equal(r[1].seen_count, 2);
    assert_int_equal(r[2].seen_count, 1);          /* excepted from seq 1 */
    assert_int_equal(r[2].seen[0], 2);
    /* A channel with no subscribers on a worker hands that worker nothing. */
    hub_unsubscribe(hub, &r[0].subscriber);
    assert_int_equal(publish(hub, "c", &plain, NULL, 0), 2);
    assert_int_equal(queues.count[0], 0);
    assert_int_equal(queues.count[1], 1);
    queue_drain(hub, &queues, 1);
    hub_unsubscribe(hub, &r[1].subscriber);
    hub_unsubscribe(hub, &r[2].subscriber);
    hub_free(hub);
}

static void test_shared_hub_never_gives_a_message_twice_or_out_of_order(void **state)
{
    (void)state;
    struct queues queues = { 0 };
    struct hub *hub = hub_new_shared(2, queue_post, &queues);
    struct recorder early;
    struct recorder late;
    shared_init(&early, 0, NULL, 0);
    shared_init(&late, 1, NULL, 0);
    assert_int_equal(hub_subscribe(hub, "h", &held, &early.subscriber), 0);
    assert_int_equal(publish(hub, "h", &held, NULL, 0), 1);   /* seq 1, queued */
    /* Subscribed with seq 1 still queued: the queue does not give it seq 1,
     * its replay does, once. */
    assert_int_equal(hub_subscribe(hub, "h", &held, &late.subscriber), 0);
    hub_replay(hub, &late.subscriber, 0, 0);
    assert_int_equal(late.seen_count, 1);
    assert_int_equal(publish(hub, "h", &held, NULL, 0), 2);   /* seq 2 */
    /* A replay ahead of the queue: seq 2 is not given again by it. */
    hub_replay(hub, &late.subscriber, 1, 0);
    queue_drain(hub, &queues, 0);
    assert_int_equal(early.seen_count, 2);
    assert_int_equal(early.seen[0], 1);
    assert_int_equal(early.seen[1], 2);
    assert_int_equal(late.seen_count, 2);
    assert_int_equal(late.seen[0], 1);
    assert_int_equal(late.seen[1], 2);
    hub_unsubscribe(hub, &early.subscriber);
    hub_unsubscribe(hub, &late.subscriber);
    hub_free(hub);
}

static void test_shared_hub_presence_goes_through_the_queues(void **state)
{
    (void)state;
    struct queues queues = { 0 };
    struct hub *hub = hub_new_shared(2, queue_post, &queues);
    struct recorder a;
    struct recorder b;
    shared_init(&a, 0, "ann", 0);
    shared_init(&b, 1, "bob", 1);
    assert_int_equal(hub_subscribe(hub, "p", &with_presence, &a.subscriber), 1);
    hub_announce_join(hub, &a.subscriber);
    queue_drain(hub, &queues, 0);
    assert_int_equal(hub_subscribe(hub, "p", &with_presence, &b.subscriber), 1);
    hub_announce_join(hub, &b.subscriber);
    queue_drain(hub, &queues, 0);
    queue_drain(hub, &queues, 1);
    assert_int_equal(a.event_count, 2);
    assert_string_equal(a.events[1], "{\"op\":\"join\",\"channel\":\"p\",\"user\":\"bob\"}");
    assert_int_equal(b.event_count, 1);             /* its own join, not ann's */
    /* The leaver gets its leave at once; the others through their worker. */
    hub_unsubscribe(hub, &b.subscriber);
    assert_int_equal(b.event_count, 2);
    assert_string_equal(b.events[1], "{\"op\":\"leave\",\"channel\":\"p\",\"user\":\"bob\"}");
    assert_int_equal(queues.count[1], 0);
    queue_drain(hub, &queues, 0);
    assert_int_equal(a.event_count, 3);
    assert_string_equal(a.events[2], b.events[1]);
    hub_unsubscribe(hub, &a.subscriber);
    hub_free(hub);
}

static void test_shared_hub_keeps_a_channel_while_items_hold_it(void **state)
{
    (void)state;
    struct queues queues = { 0 };
    struct hub *hub = hub_new_shared(2, queue_post, &queues);
    struct recorder r;
    shared_init(&r, 0, NULL, 1);
    assert_int_equal(hub_subscribe(hub, "gone", &plain, &r.subscriber), 0);
    assert_int_equal(publish(hub, "gone", &plain, NULL, 0), 1);
    char epoch[HUB_EPOCH_SIZE];
    struct hub_channel_info info;
    assert_true(hub_channel_info(hub, "gone", &info));
    memcpy(epoch, info.epoch, sizeof(epoch));
    hub_unsubscribe(hub, &r.subscriber);
    /* Idle, but an item still points at it: same channel, same epoch. */
    assert_true(hub_channel_info(hub, "gone", &info));
    assert_string_equal(info.epoch, epoch);
    queue_drain(hub, &queues, 1);                   /* nobody left to take it */
    assert_int_equal(r.seen_count, 0);
    assert_false(hub_channel_info(hub, "gone", &info));
    /* A post that fails drops its references at once. */
    queues.refuse = true;
    assert_int_equal(hub_subscribe(hub, "gone", &plain, &r.subscriber), 0);
    assert_int_equal(publish(hub, "gone", &plain, NULL, 0), 1);
    hub_unsubscribe(hub, &r.subscriber);
    assert_false(hub_channel_info(hub, "gone", &info));
    hub_free(hub);
}

/* ---- a cluster hub: numbered elsewhere, interest reported ---- */

struct cluster_log {
    char lines[16][64];
    int count;
};

static void cluster_record(void *arg, enum hub_cluster_event event, const char *channel,
                           const char *user)
{
    static const char *const names[] = { "on", "off", "join", "leave" };
    struct cluster_log *log = arg;
    assert_true(log->count < 16);
    snprintf(log->lines[log->count++], 64, "%s %s %s", names[event], channel,
             user != NULL ? user : "-");
}

static void numbered(struct hub *hub, const char *channel, uint64_t seq, const char *epoch,
                     uint64_t except, long expected)
{
    struct message *m = message_new(MESSAGE_TEXT, channel, NULL, "x", 1);
    m->seq = seq;
    assert_int_equal(hub_publish_numbered(hub, m, epoch, except), expected);
    message_release(m);
}

static void test_cluster_hub_reports_interest_and_membership(void **state)
{
    (void)state;
    struct queues queues = { 0 };
    struct cluster_log log = { 0 };
    struct hub *hub = hub_new_cluster(1, queue_post, &queues, cluster_record, &log);
    assert_non_null(hub);
    assert_false(hub_is_direct(hub));   /* one worker, still through its queue */
    struct recorder a, b;
    shared_init(&a, 0, "ann", 0);
    shared_init(&b, 1, "ann", 0);
    assert_int_equal(hub_subscribe(hub, "p", &with_presence, &a.subscriber), 1);
    hub_announce_join(hub, &a.subscriber);
    assert_int_equal(hub_subscribe(hub, "p", &with_presence, &b.subscriber), 0);
    hub_unsubscribe(hub, &a.subscriber);
    hub_unsubscribe(hub, &b.subscriber);
    assert_int_equal(log.count, 4);
    assert_string_equal(log.lines[0], "on p -");
    assert_string_equal(log.lines[1], "join p ann");
    assert_string_equal(log.lines[2], "leave p ann");
    assert_string_equal(log.lines[3], "off p -");
    /* The hub sends no presence frame of its own: they come from Redis. */
    assert_int_equal(queues.count[0], 0);
    hub_free(hub);
}

static void test_cluster_hub_keeps_redis_numbering(void **state)
{
    (void)state;
    struct queues queues = { 0 };
    struct cluster_log log = { 0 };
    struct hub *hub = hub_new_cluster(2, queue_post, &queues, cluster_record, &log);
    struct recorder r[2];
    shared_init(&r[0], 0, NULL, 0);
    shared_init(&r[1], 1, NULL, 1);
    numbered(hub, "n", 1, "e1", 0, 0);               /* nobody here: not kept */
    assert_int_equal(hub_subscribe(hub, "n", &held, &r[0].subscriber), 0);
    assert_int_equal(hub_subscribe(hub, "n", &held, &r[1].subscriber), 0);
    numbered(hub, "n", 7, "e1", 0, 2);
    numbered(hub, "n", 7, "e1", 0, 2);               /* the same twice: once */
    numbered(hub, "n", 8, "e1", hub_subscriber_id(&r[1].subscriber), 2);
    queue_drain(hub, &queues, 0);
    queue_drain(hub, &queues, 1);
    assert_int_equal(r[0].seen_count, 2);
    assert_int_equal(r[0].seen[0], 7);
    assert_int_equal(r[0].seen[1], 8);
    assert_int_equal(r[1].seen_count, 1);            /* excepted from 8 */
    /* Redis lost its numbering: a new epoch starts from 1 for everyone. */
    numbered(hub, "n", 1, "e2", 0, 2);
    numbered(hub, "n", 2, "e2", 0, 2);
    queue_drain(hub, &queues, 0);
    queue_drain(hub, &queues, 1);
    assert_int_equal(r[0].seen_count, 4);
    assert_int_equal(r[0].seen[2], 1);
    assert_int_equal(r[0].seen[3], 2);
    assert_int_equal(r[1].seen_count, 3);
    struct hub_channel_info info;
    assert_true(hub_channel_info(hub, "n", &info));
    assert_string_equal(info.epoch, "e2");
    assert_int_equal(info.seq, 2);
    struct hub_stats stats;
    hub_stats(hub, &stats);
    assert_int_equal(stats.history_messages, 0);     /* history is in Redis */
    hub_unsubscribe(hub, &r[0].subscriber);
    hub_unsubscribe(hub, &r[1].subscriber);
    hub_free(hub);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_publish_reaches_every_subscriber_in_order),
        cmocka_unit_test(test_seq_grows_per_channel),
        cmocka_unit_test(test_idle_channel_is_freed_and_gets_a_new_epoch),
        cmocka_unit_test(test_history_ring_keeps_the_last_messages),
        cmocka_unit_test(test_history_ttl_expires_and_frees_idle_channels),
        cmocka_unit_test(test_presence_counts_users_not_connections),
        cmocka_unit_test(test_presence_list_is_sorted),
        cmocka_unit_test(test_subscriber_may_leave_during_delivery),
        cmocka_unit_test(test_many_channels_grow_the_table),
        cmocka_unit_test(test_shared_hub_queues_one_item_per_worker_with_subscribers),
        cmocka_unit_test(test_shared_hub_never_gives_a_message_twice_or_out_of_order),
        cmocka_unit_test(test_shared_hub_presence_goes_through_the_queues),
        cmocka_unit_test(test_shared_hub_keeps_a_channel_while_items_hold_it),
        cmocka_unit_test(test_cluster_hub_reports_interest_and_membership),
        cmocka_unit_test(test_cluster_hub_keeps_redis_numbering),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
