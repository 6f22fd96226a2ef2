#include "hub.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "seeded_hash.h"
#include "wsframe.h"

struct hub_member {
    char *user;
    size_t connections;
};

struct hub_channel {
    struct hub_channel *bucket_next;
    uint64_t hash;
    struct hub_subscriber *first;
    struct hub_subscriber *last;
    size_t subscriber_count;
    uint64_t seq;
    char epoch[HUB_EPOCH_SIZE];
    /* settings copied from the rule when the channel was created */
    unsigned history_capacity;
    unsigned history_ttl;
    bool presence;
    /* history ring: the last history_capacity messages, oldest at head */
    struct message **history;
    unsigned history_head;
    unsigned history_count;
    /* presence: members sorted by user name */
    struct hub_member *members;
    size_t member_count;
    size_t member_capacity;
    char name[];
};

struct hub {
    struct hub_channel **buckets;
    size_t bucket_count;          /* a power of two */
    size_t channel_count;
    size_t subscription_count;
    uint64_t seed;                /* per hub, so channel names chosen by
                                     clients cannot aim at one bucket */
    uint32_t epoch_base;          /* random per broker run */
    uint64_t channels_created;
};

#define HUB_INITIAL_BUCKETS 64

/* ------------------------------------------------------------ table */

static uint64_t hub_hash(const struct hub *hub, const char *name)
{
    return seeded_hash_bytes(hub->seed, name, strlen(name));
}

struct hub *hub_new(void)
{
    struct hub *hub = calloc(1, sizeof(*hub));
    if (hub == NULL)
        return NULL;
    hub->buckets = calloc(HUB_INITIAL_BUCKETS, sizeof(*hub->buckets));
    if (hub->buckets == NULL) {
        free(hub);
        return NULL;
    }
    hub->bucket_count = HUB_INITIAL_BUCKETS;
    seeded_hash_random(&hub->seed, sizeof(hub->seed));
    seeded_hash_random(&hub->epoch_base, sizeof(hub->epoch_base));
    return hub;
}

static void hub_channel_free(struct hub_channel *channel)
{
    for (unsigned i = 0; i < channel->history_count; i++)
        message_release(channel->history[(channel->history_head + i) % channel->history_capacity]);
    free(channel->history);
    for (size_t i = 0; i < channel->member_count; i++)
        free(channel->members[i].user);
    free(channel->members);
    free(channel);
}

void hub_free(struct hub *hub)
{
    if (hub == NULL)
        return;
    for (size_t i = 0; i < hub->bucket_count; i++) {
        struct hub_channel *channel = hub->buckets[i];
        while (channel != NULL) {
            struct hub_channel *next = channel->bucket_next;
            hub_channel_free(channel);
            channel = next;
        }
    }
    free(hub->buckets);
    free(hub);
}

static struct hub_channel *hub_find(const struct hub *hub, const char *name)
{
    uint64_t hash = hub_hash(hub, name);
    struct hub_channel *channel = hub->buckets[hash & (hub->bucket_count - 1)];
    for (; channel != NULL; channel = channel->bucket_next) {
        if (channel->hash == hash && strcmp(channel->name, name) == 0)
            return channel;
    }
    return NULL;
}

/* Doubles the table when it is full on average; failure to grow is harmless
 * (chains just get longer). */
static void hub_grow(struct hub *hub)
{
    if (hub->channel_count < hub->bucket_count || hub->bucket_count > SIZE_MAX / 4)
        return;
    size_t count = hub->bucket_count * 2;
    struct hub_channel **buckets = calloc(count, sizeof(*buckets));
    if (buckets == NULL)
        return;
    for (size_t i = 0; i < hub->bucket_count; i++) {
        struct hub_channel *channel = hub->buckets[i];
        while (channel != NULL) {
            struct hub_channel *next = channel->bucket_next;
            size_t index = channel->hash & (count - 1);
            channel->bucket_next = buckets[index];
            buckets[index] = channel;
            channel = next;
        }
    }
    free(hub->buckets);
    hub->buckets = buckets;
    hub->bucket_count = count;
}

static struct hub_channel *hub_channel_create(struct hub *hub, const char *name,
                                              const struct channel_rule *rule)
{
    size_t length = strlen(name);
    struct hub_channel *channel = calloc(1, sizeof(*channel) + length + 1);
    if (channel == NULL)
        return NULL;
    memcpy(channel->name, name, length + 1);
    channel->hash = hub_hash(hub, name);
    channel->history_capacity = rule->history;
    channel->history_ttl = rule->history_ttl;
    channel->presence = rule->presence;
    if (channel->history_capacity > 0) {
        channel->history = calloc(channel->history_capacity, sizeof(*channel->history));
        if (channel->history == NULL) {
            free(channel);
            return NULL;
        }
    }
    snprintf(channel->epoch, sizeof(channel->epoch), "%08x-%llx", (unsigned)hub->epoch_base,
             (unsigned long long)++hub->channels_created);
    size_t index = channel->hash & (hub->bucket_count - 1);
    channel->bucket_next = hub->buckets[index];
    hub->buckets[index] = channel;
    hub->channel_count++;
    hub_grow(hub);
    return channel;
}

static struct hub_channel *hub_find_or_create(struct hub *hub, const char *name,
                                              const struct channel_rule *rule)
{
    struct hub_channel *channel = hub_find(hub, name);
    return channel != NULL ? channel : hub_channel_create(hub, name, rule);
}

static void hub_channel_destroy(struct hub *hub, struct hub_channel *channel)
{
    struct hub_channel **link = &hub->buckets[channel->hash & (hub->bucket_count - 1)];
    while (*link != channel)
        link = &(*link)->bucket_next;
    *link = channel->bucket_next;
    hub->channel_count--;
    hub_channel_free(channel);
}

static void hub_free_if_idle(struct hub *hub, struct hub_channel *channel)
{
    if (channel->subscriber_count == 0 && channel->history_count == 0)
        hub_channel_destroy(hub, channel);
}

/* ------------------------------------------------------------ presence */

/* Index of user in the sorted member array, or where it would go. */
static size_t hub_member_search(const struct hub_channel *channel, const char *user, bool *found)
{
    size_t low = 0;
    size_t high = channel->member_count;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        int order = strcmp(channel->members[middle].user, user);
        if (order == 0) {
            *found = true;
            return middle;
        }
        if (order < 0)
            low = middle + 1;
        else
            high = middle;
    }
    *found = false;
    return low;
}

/* Returns 1 when user became a member, 0 when it already was, -1 on OOM. */
static int hub_member_add(struct hub_channel *channel, const char *user)
{
    bool found;
    size_t index = hub_member_search(channel, user, &found);
    if (found) {
        channel->members[index].connections++;
        return 0;
    }
    if (channel->member_count == channel->member_capacity) {
        size_t capacity = channel->member_capacity ? channel->member_capacity * 2 : 4;
        struct hub_member *members = realloc(channel->members, capacity * sizeof(*members));
        if (members == NULL)
            return -1;
        channel->members = members;
        channel->member_capacity = capacity;
    }
    char *copy = strdup(user);
    if (copy == NULL)
        return -1;
    memmove(&channel->members[index + 1], &channel->members[index],
            (channel->member_count - index) * sizeof(*channel->members));
    channel->members[index] = (struct hub_member){ .user = copy, .connections = 1 };
    channel->member_count++;
    return 1;
}

/* Returns true when user's last connection left. */
static bool hub_member_remove(struct hub_channel *channel, const char *user)
{
    bool found;
    size_t index = hub_member_search(channel, user, &found);
    if (!found || --channel->members[index].connections > 0)
        return false;
    free(channel->members[index].user);
    memmove(&channel->members[index], &channel->members[index + 1],
            (channel->member_count - index - 1) * sizeof(*channel->members));
    channel->member_count--;
    return true;
}

static void hub_send_presence(struct hub_channel *channel, const char *op, const char *user)
{
    size_t length;
    char *text = envelope_presence_event(op, channel->name, user, &length);
    struct shared_frame *frame = text != NULL ? shared_frame_encode(WS_OP_TEXT, text, length) : NULL;
    free(text);
    if (frame == NULL)
        return;   /* out of memory: an event is lost, membership stays right */
    struct hub_subscriber *subscriber = channel->first;
    size_t remaining = channel->subscriber_count;
    while (subscriber != NULL && remaining-- > 0) {
        struct hub_subscriber *next = subscriber->next;
        if (subscriber->presence_events && subscriber->deliver_event != NULL)
            subscriber->deliver_event(subscriber, frame);
        subscriber = next;
    }
    shared_frame_release(frame);
}

/* ------------------------------------------------------------ subscribe */

static void hub_link(struct hub_channel *channel, struct hub_subscriber *subscriber)
{
    subscriber->channel = channel;
    subscriber->next = NULL;
    subscriber->previous = channel->last;
    if (channel->last != NULL)
        channel->last->next = subscriber;
    else
        channel->first = subscriber;
    channel->last = subscriber;
    channel->subscriber_count++;
}

static void hub_unlink(struct hub_channel *channel, struct hub_subscriber *subscriber)
{
    if (subscriber->previous != NULL)
        subscriber->previous->next = subscriber->next;
    else
        channel->first = subscriber->next;
    if (subscriber->next != NULL)
        subscriber->next->previous = subscriber->previous;
    else
        channel->last = subscriber->previous;
    subscriber->channel = NULL;
    subscriber->previous = subscriber->next = NULL;
    channel->subscriber_count--;
}

int hub_subscribe(struct hub *hub, const char *name, const struct channel_rule *rule,
                  struct hub_subscriber *subscriber)
{
    struct hub_channel *channel = hub_find_or_create(hub, name, rule);
    if (channel == NULL)
        return -1;
    int joined = 0;
    if (channel->presence && subscriber->user != NULL) {
        joined = hub_member_add(channel, subscriber->user);
        if (joined < 0) {
            hub_free_if_idle(hub, channel);
            return -1;
        }
    }
    hub_link(channel, subscriber);
    hub->subscription_count++;
    return joined;
}

void hub_announce_join(struct hub *hub, struct hub_subscriber *subscriber)
{
    (void)hub;
    if (subscriber->channel != NULL && subscriber->channel->presence && subscriber->user != NULL)
        hub_send_presence(subscriber->channel, "join", subscriber->user);
}

void hub_unsubscribe(struct hub *hub, struct hub_subscriber *subscriber)
{
    struct hub_channel *channel = subscriber->channel;
    if (channel == NULL)
        return;
    if (channel->presence && subscriber->user != NULL &&
        hub_member_remove(channel, subscriber->user))
        hub_send_presence(channel, "leave", subscriber->user);
    hub_unlink(channel, subscriber);
    hub->subscription_count--;
    hub_free_if_idle(hub, channel);
}

/* ------------------------------------------------------------ history */

static struct message *hub_history_at(const struct hub_channel *channel, unsigned index)
{
    return channel->history[(channel->history_head + index) % channel->history_capacity];
}

static void hub_history_drop_oldest(struct hub_channel *channel)
{
    message_release(channel->history[channel->history_head]);
    channel->history[channel->history_head] = NULL;
    channel->history_head = (channel->history_head + 1) % channel->history_capacity;
    channel->history_count--;
}

static void hub_history_expire(struct hub_channel *channel, int64_t now)
{
    if (channel->history_ttl == 0)
        return;
    while (channel->history_count > 0 &&
           hub_history_at(channel, 0)->published_at + (int64_t)channel->history_ttl * 1000 <= now)
        hub_history_drop_oldest(channel);
}

static void hub_history_push(struct hub_channel *channel, struct message *message)
{
    if (channel->history_capacity == 0)
        return;
    if (channel->history_count == channel->history_capacity)
        hub_history_drop_oldest(channel);
    unsigned tail = (channel->history_head + channel->history_count) % channel->history_capacity;
    channel->history[tail] = message_retain(message);
    channel->history_count++;
}

long hub_publish(struct hub *hub, struct message *message, const struct channel_rule *rule,
                 const struct hub_subscriber *except, int64_t now, char *epoch)
{
    struct hub_channel *channel = hub_find_or_create(hub, message->channel, rule);
    if (channel == NULL)
        return -1;
    if (epoch != NULL)
        memcpy(epoch, channel->epoch, HUB_EPOCH_SIZE);
    message->seq = ++channel->seq;
    message->published_at = now;
    hub_history_expire(channel, now);
    hub_history_push(channel, message);
    /* A receiver may unsubscribe itself while being delivered to: read next
     * first and stop at the snapshot's end. The channel itself survives the
     * loop: it is only freed below. */
    long deliveries = 0;
    size_t remaining = channel->subscriber_count;
    struct hub_subscriber *subscriber = channel->first;
    channel->subscriber_count++;   /* pin: keeps hub_unsubscribe from freeing it */
    while (subscriber != NULL && remaining-- > 0) {
        struct hub_subscriber *next = subscriber->next;
        if (subscriber != except) {
            subscriber->deliver(subscriber, message);
            deliveries++;
        }
        subscriber = next;
    }
    channel->subscriber_count--;
    hub_free_if_idle(hub, channel);
    return deliveries;
}

void hub_position(const struct hub_subscriber *subscriber, bool has_since, uint64_t since,
                  const char *epoch, int64_t now, struct hub_position *position)
{
    struct hub_channel *channel = subscriber->channel;
    hub_history_expire(channel, now);
    position->seq = channel->seq;
    memcpy(position->epoch, channel->epoch, sizeof(position->epoch));
    position->recovered = true;
    position->replay_after = channel->seq;
    if (!has_since)
        return;
    uint64_t oldest_held = channel->history_count > 0 ? hub_history_at(channel, 0)->seq
                                                      : channel->seq + 1;
    bool same_epoch = epoch == NULL || strcmp(epoch, channel->epoch) == 0;
    if (same_epoch && since >= channel->seq)
        return;   /* up to date (or ahead): nothing was missed */
    if (same_epoch && since + 1 >= oldest_held) {
        position->replay_after = since;
        return;
    }
    position->recovered = false;
    position->replay_after = 0;
}

uint64_t hub_next_seq(const struct hub *hub, const char *name)
{
    const struct hub_channel *channel = hub_find(hub, name);
    return channel != NULL ? channel->seq + 1 : 1;
}

void hub_replay(struct hub *hub, struct hub_subscriber *subscriber, uint64_t after, int64_t now)
{
    (void)hub;
    struct hub_channel *channel = subscriber->channel;
    if (channel == NULL)
        return;
    hub_history_expire(channel, now);
    for (unsigned i = 0; i < channel->history_count && subscriber->channel == channel; i++) {
        struct message *message = hub_history_at(channel, i);
        if (message->seq > after)
            subscriber->deliver(subscriber, message);
    }
}

void hub_expire(struct hub *hub, int64_t now)
{
    for (size_t i = 0; i < hub->bucket_count; i++) {
        struct hub_channel *channel = hub->buckets[i];
        while (channel != NULL) {
            struct hub_channel *next = channel->bucket_next;
            hub_history_expire(channel, now);
            hub_free_if_idle(hub, channel);
            channel = next;
        }
    }
}

/* ------------------------------------------------------------ queries */

static void hub_fill_info(const struct hub_channel *channel, struct hub_channel_info *info)
{
    info->name = channel->name;
    info->subscribers = channel->subscriber_count;
    info->seq = channel->seq;
    info->epoch = channel->epoch;
    info->presence = channel->presence;
}

bool hub_channel_info(const struct hub *hub, const char *name, struct hub_channel_info *info)
{
    const struct hub_channel *channel = hub_find(hub, name);
    if (channel == NULL)
        return false;
    hub_fill_info(channel, info);
    return true;
}

void hub_each_channel(const struct hub *hub,
                      void (*visit)(const struct hub_channel_info *info, void *arg), void *arg)
{
    for (size_t i = 0; i < hub->bucket_count; i++) {
        for (const struct hub_channel *channel = hub->buckets[i]; channel != NULL;
             channel = channel->bucket_next) {
            struct hub_channel_info info;
            hub_fill_info(channel, &info);
            visit(&info, arg);
        }
    }
}

void hub_each_user(const struct hub *hub, const char *name,
                   void (*visit)(const char *user, void *arg), void *arg)
{
    const struct hub_channel *channel = hub_find(hub, name);
    if (channel == NULL)
        return;
    for (size_t i = 0; i < channel->member_count; i++)
        visit(channel->members[i].user, arg);
}

void hub_stats(const struct hub *hub, struct hub_stats *stats)
{
    stats->channels = hub->channel_count;
    stats->subscriptions = hub->subscription_count;
    stats->history_messages = 0;
    stats->channel_bytes = 0;
    for (size_t i = 0; i < hub->bucket_count; i++) {
        for (const struct hub_channel *c = hub->buckets[i]; c != NULL; c = c->bucket_next) {
            stats->history_messages += c->history_count;
            for (unsigned k = 0; k < c->history_count; k++)
                stats->channel_bytes += message_footprint(hub_history_at(c, k));
            stats->channel_bytes += sizeof(*c) + strlen(c->name) + 1 +
                                    (size_t)c->history_capacity * sizeof(*c->history) +
                                    c->member_capacity * sizeof(*c->members);
        }
    }
}
