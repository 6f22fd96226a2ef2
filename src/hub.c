#include "hub.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct hub_channel {
    struct hub_channel *bucket_next;
    struct hub_subscriber *first;
    struct hub_subscriber *last;
    size_t subscriber_count;
    uint64_t hash;
    char name[];
};

struct hub {
    struct hub_channel **buckets;
    size_t bucket_count;          /* a power of two */
    size_t channel_count;
    uint64_t seed;                /* per hub, so channel names chosen by
                                     clients cannot aim at one bucket */
};

#define HUB_INITIAL_BUCKETS 64

struct hub_message *hub_message_new(size_t length)
{
    if (length > SIZE_MAX - sizeof(struct hub_message))
        return NULL;
    struct hub_message *message = malloc(sizeof(*message) + length);
    if (message == NULL)
        return NULL;
    message->refcount = 1;
    message->length = length;
    return message;
}

struct hub_message *hub_message_retain(struct hub_message *message)
{
    message->refcount++;
    return message;
}

void hub_message_release(struct hub_message *message)
{
    if (message != NULL && --message->refcount == 0)
        free(message);
}

static uint64_t hub_hash(const struct hub *hub, const char *name)
{
    /* FNV-1a over a seeded basis, finished with a 64-bit mixer. */
    uint64_t hash = 0xcbf29ce484222325ULL ^ hub->seed;
    for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++) {
        hash ^= *p;
        hash *= 0x100000001b3ULL;
    }
    hash ^= hash >> 33;
    hash *= 0xff51afd7ed558ccdULL;
    hash ^= hash >> 33;
    return hash;
}

static uint64_t hub_random_seed(void)
{
    uint64_t seed = 0;
    if (getentropy(&seed, sizeof(seed)) != 0)
        seed = (uint64_t)(uintptr_t)&seed;   /* still varies per run with ASLR */
    return seed;
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
    hub->seed = hub_random_seed();
    return hub;
}

void hub_free(struct hub *hub)
{
    if (hub == NULL)
        return;
    for (size_t i = 0; i < hub->bucket_count; i++) {
        struct hub_channel *channel = hub->buckets[i];
        while (channel != NULL) {
            struct hub_channel *next = channel->bucket_next;
            free(channel);
            channel = next;
        }
    }
    free(hub->buckets);
    free(hub);
}

static struct hub_channel *hub_find(const struct hub *hub, const char *name, uint64_t hash)
{
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

static struct hub_channel *hub_channel_create(struct hub *hub, const char *name, uint64_t hash)
{
    size_t length = strlen(name);
    struct hub_channel *channel = calloc(1, sizeof(*channel) + length + 1);
    if (channel == NULL)
        return NULL;
    memcpy(channel->name, name, length + 1);
    channel->hash = hash;
    size_t index = hash & (hub->bucket_count - 1);
    channel->bucket_next = hub->buckets[index];
    hub->buckets[index] = channel;
    hub->channel_count++;
    hub_grow(hub);
    return channel;
}

static void hub_channel_destroy(struct hub *hub, struct hub_channel *channel)
{
    struct hub_channel **link = &hub->buckets[channel->hash & (hub->bucket_count - 1)];
    while (*link != channel)
        link = &(*link)->bucket_next;
    *link = channel->bucket_next;
    hub->channel_count--;
    free(channel);
}

int hub_subscribe(struct hub *hub, const char *name, struct hub_subscriber *subscriber)
{
    uint64_t hash = hub_hash(hub, name);
    struct hub_channel *channel = hub_find(hub, name, hash);
    if (channel == NULL)
        channel = hub_channel_create(hub, name, hash);
    if (channel == NULL)
        return -1;
    subscriber->channel = channel;
    subscriber->next = NULL;
    subscriber->previous = channel->last;
    if (channel->last != NULL)
        channel->last->next = subscriber;
    else
        channel->first = subscriber;
    channel->last = subscriber;
    channel->subscriber_count++;
    return 0;
}

void hub_unsubscribe(struct hub *hub, struct hub_subscriber *subscriber)
{
    struct hub_channel *channel = subscriber->channel;
    if (channel == NULL)
        return;
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
    if (--channel->subscriber_count == 0)
        hub_channel_destroy(hub, channel);
}

size_t hub_publish(struct hub *hub, const char *name, struct hub_message *message,
                   const struct hub_subscriber *except)
{
    struct hub_channel *channel = hub_find(hub, name, hub_hash(hub, name));
    if (channel == NULL)
        return 0;
    /* A receiver may unsubscribe itself while being delivered to, and that
     * may free the channel when it was the last one: read next first and
     * stop at the snapshot's end. */
    size_t deliveries = 0;
    size_t remaining = channel->subscriber_count;
    struct hub_subscriber *subscriber = channel->first;
    while (subscriber != NULL && remaining-- > 0) {
        struct hub_subscriber *next = subscriber->next;
        if (subscriber != except) {
            subscriber->deliver(subscriber, message);
            deliveries++;
        }
        subscriber = next;
    }
    return deliveries;
}

size_t hub_channel_count(const struct hub *hub)
{
    return hub->channel_count;
}

size_t hub_subscriber_count(const struct hub *hub, const char *name)
{
    const struct hub_channel *channel = hub_find(hub, name, hub_hash(hub, name));
    return channel != NULL ? channel->subscriber_count : 0;
}
