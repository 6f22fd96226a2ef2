#include "hub.h"

#include <pthread.h>
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

/* One worker's subscribers of a channel: changed only on that worker's
 * thread (with the hub locked), so that thread walks it without the lock. */
struct hub_local {
    struct hub_subscriber *first;
    struct hub_subscriber *last;
    size_t count;
};

struct hub_channel {
    struct hub_channel *bucket_next;
    uint64_t hash;
    struct hub_local *locals;     /* one per worker */
    size_t subscriber_count;      /* over every worker */
    size_t pins;                  /* hub_items and deliveries in progress */
    uint64_t events;              /* presence events sent so far */
    uint64_t generation;          /* cluster: numberings seen (epochs) */
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
    unsigned workers;
    hub_post_fn *post;            /* NULL: direct delivery */
    void *post_arg;
    pthread_mutex_t lock;         /* held around everything when post is set */
    uint64_t subscriber_ids;
    struct hub_channel **buckets;
    size_t bucket_count;          /* a power of two */
    size_t channel_count;
    size_t subscription_count;
    uint64_t seed;                /* per hub, so channel names chosen by
                                     clients cannot aim at one bucket */
    uint32_t epoch_base;          /* random per broker run */
    uint64_t channels_created;
    hub_cluster_fn *cluster;      /* NULL: not a cluster hub */
    void *cluster_arg;
};

#define HUB_INITIAL_BUCKETS 64

/* ------------------------------------------------------------ table */

static uint64_t hub_hash(const struct hub *hub, const char *name)
{
    return seeded_hash_bytes(hub->seed, name, strlen(name));
}

/* A direct hub serves one thread: it takes no lock at all. */
static void hub_lock(const struct hub *hub)
{
    if (hub->post != NULL)
        pthread_mutex_lock(&((struct hub *)hub)->lock);
}

static void hub_unlock(const struct hub *hub)
{
    if (hub->post != NULL)
        pthread_mutex_unlock(&((struct hub *)hub)->lock);
}

struct hub *hub_new(void)
{
    return hub_new_shared(1, NULL, NULL);
}

bool hub_is_direct(const struct hub *hub)
{
    return hub->post == NULL;
}

struct hub *hub_new_shared(unsigned workers, hub_post_fn *post, void *post_arg)
{
    if (workers == 0 || (workers > 1 && post == NULL))
        return NULL;
    struct hub *hub = calloc(1, sizeof(*hub));
    if (hub == NULL)
        return NULL;
    hub->buckets = calloc(HUB_INITIAL_BUCKETS, sizeof(*hub->buckets));
    if (hub->buckets == NULL || pthread_mutex_init(&hub->lock, NULL) != 0) {
        free(hub->buckets);
        free(hub);
        return NULL;
    }
    hub->workers = workers;
    hub->post = workers > 1 ? post : NULL;
    hub->post_arg = post_arg;
    hub->bucket_count = HUB_INITIAL_BUCKETS;
    seeded_hash_random(&hub->seed, sizeof(hub->seed));
    seeded_hash_random(&hub->epoch_base, sizeof(hub->epoch_base));
    return hub;
}

struct hub *hub_new_cluster(unsigned workers, hub_post_fn *post, void *post_arg,
                            hub_cluster_fn *cluster, void *cluster_arg)
{
    struct hub *hub = post != NULL && cluster != NULL ? hub_new_shared(workers, post, post_arg)
                                                      : NULL;
    if (hub == NULL)
        return NULL;
    hub->post = post;   /* even for one worker: deliveries come from the cluster's thread */
    hub->cluster = cluster;
    hub->cluster_arg = cluster_arg;
    return hub;
}

uint64_t hub_subscriber_id(const struct hub_subscriber *subscriber)
{
    return subscriber->channel != NULL ? subscriber->id : 0;
}

uint64_t hub_subscriber_last_seq(const struct hub_subscriber *subscriber)
{
    return subscriber->last_seq;
}

void hub_subscriber_advance(struct hub_subscriber *subscriber, uint64_t seq)
{
    if (seq > subscriber->last_seq)
        subscriber->last_seq = seq;
}

static void hub_channel_free(struct hub_channel *channel)
{
    for (unsigned i = 0; i < channel->history_count; i++)
        message_release(channel->history[(channel->history_head + i) % channel->history_capacity]);
    free(channel->history);
    for (size_t i = 0; i < channel->member_count; i++)
        free(channel->members[i].user);
    free(channel->members);
    free(channel->locals);
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
    pthread_mutex_destroy(&hub->lock);
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
    channel->locals = calloc(hub->workers, sizeof(*channel->locals));
    if (channel->locals == NULL) {
        free(channel);
        return NULL;
    }
    channel->hash = hub_hash(hub, name);
    channel->history_capacity = hub->cluster != NULL ? 0 : rule->history;
    channel->history_ttl = rule->history_ttl;
    channel->presence = rule->presence;
    if (channel->history_capacity > 0) {
        channel->history = calloc(channel->history_capacity, sizeof(*channel->history));
        if (channel->history == NULL) {
            free(channel->locals);
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
    if (channel->subscriber_count == 0 && channel->history_count == 0 && channel->pins == 0)
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

static struct shared_frame *hub_presence_frame(const struct hub_channel *channel, const char *op,
                                               const char *user)
{
    size_t length;
    char *text = envelope_presence_event(op, channel->name, user, &length);
    struct shared_frame *frame = text != NULL ? shared_frame_encode(WS_OP_TEXT, text, length) : NULL;
    free(text);
    return frame;   /* NULL when out of memory: an event is lost, membership stays right */
}

static void hub_send_presence_frame(struct hub *hub, struct hub_channel *channel, const char *op,
                                    const char *user);

/* Shared hub, locked: hands frame to every worker with subscribers there. */
static void hub_post(struct hub *hub, struct hub_channel *channel, struct message *message,
                     struct shared_frame *frame, uint64_t except)
{
    for (unsigned w = 0; w < hub->workers; w++) {
        if (channel->locals[w].count == 0)
            continue;
        struct hub_item item = {
            .channel = channel, .except = except, .stamp = channel->events,
            .generation = channel->generation,
            .message = message != NULL ? message_retain(message) : NULL,
            .frame = frame != NULL ? shared_frame_retain(frame) : NULL,
        };
        channel->pins++;
        if (!hub->post(hub->post_arg, w, &item)) {
            channel->pins--;
            message_release(item.message);
            shared_frame_release(item.frame);
        }
    }
}

static void hub_send_presence(struct hub *hub, struct hub_channel *channel, const char *op,
                              const char *user)
{
    if (hub->cluster != NULL) {
        /* The cluster decides whether this is a join or leave everywhere. */
        hub->cluster(hub->cluster_arg, op[0] == 'j' ? HUB_CLUSTER_JOIN : HUB_CLUSTER_LEAVE,
                     channel->name, user);
        return;
    }
    hub_send_presence_frame(hub, channel, op, user);
}

static void hub_send_presence_frame(struct hub *hub, struct hub_channel *channel, const char *op,
                                    const char *user)
{
    struct shared_frame *frame = hub_presence_frame(channel, op, user);
    if (frame == NULL)
        return;
    if (hub->post != NULL) {
        channel->events++;
        hub_post(hub, channel, NULL, frame, 0);
        shared_frame_release(frame);
        return;
    }
    struct hub_subscriber *subscriber = channel->locals[0].first;
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

static void hub_link(struct hub *hub, struct hub_channel *channel,
                     struct hub_subscriber *subscriber)
{
    struct hub_local *local = &channel->locals[subscriber->worker];
    subscriber->channel = channel;
    subscriber->id = ++hub->subscriber_ids;
    /* What was handed to workers before it joined is not for it. */
    subscriber->last_seq = channel->seq;
    subscriber->events_from = channel->events;
    subscriber->generation = channel->generation;
    if (hub->cluster != NULL && channel->subscriber_count == 0)
        hub->cluster(hub->cluster_arg, HUB_CLUSTER_INTEREST_ON, channel->name, NULL);
    subscriber->next = NULL;
    subscriber->previous = local->last;
    if (local->last != NULL)
        local->last->next = subscriber;
    else
        local->first = subscriber;
    local->last = subscriber;
    local->count++;
    channel->subscriber_count++;
}

static void hub_unlink(struct hub *hub, struct hub_channel *channel,
                       struct hub_subscriber *subscriber)
{
    struct hub_local *local = &channel->locals[subscriber->worker];
    if (subscriber->previous != NULL)
        subscriber->previous->next = subscriber->next;
    else
        local->first = subscriber->next;
    if (subscriber->next != NULL)
        subscriber->next->previous = subscriber->previous;
    else
        local->last = subscriber->previous;
    subscriber->channel = NULL;
    subscriber->previous = subscriber->next = NULL;
    local->count--;
    channel->subscriber_count--;
    if (hub->cluster != NULL && channel->subscriber_count == 0)
        hub->cluster(hub->cluster_arg, HUB_CLUSTER_INTEREST_OFF, channel->name, NULL);
}

static int hub_subscribe_locked(struct hub *hub, const char *name,
                                const struct channel_rule *rule, struct hub_subscriber *subscriber)
{
    if (subscriber->worker >= hub->workers)
        return -1;
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
    hub_link(hub, channel, subscriber);
    hub->subscription_count++;
    return joined;
}

int hub_subscribe(struct hub *hub, const char *name, const struct channel_rule *rule,
                  struct hub_subscriber *subscriber)
{
    hub_lock(hub);
    int joined = hub_subscribe_locked(hub, name, rule, subscriber);
    hub_unlock(hub);
    return joined;
}

void hub_announce_join(struct hub *hub, struct hub_subscriber *subscriber)
{
    hub_lock(hub);
    if (subscriber->channel != NULL && subscriber->channel->presence && subscriber->user != NULL)
        hub_send_presence(hub, subscriber->channel, "join", subscriber->user);
    hub_unlock(hub);
}

/* Shared hub: the others hear of the leave through their workers; the
 * leaving subscriber (on this thread) gets its copy after the unlock. */
static void hub_unsubscribe_shared(struct hub *hub, struct hub_subscriber *subscriber)
{
    hub_lock(hub);
    struct hub_channel *channel = subscriber->channel;
    struct shared_frame *frame = NULL;
    if (channel != NULL && channel->presence && subscriber->user != NULL &&
        hub_member_remove(channel, subscriber->user)) {
        if (hub->cluster != NULL)
            hub_send_presence(hub, channel, "leave", subscriber->user);
        else
            frame = hub_presence_frame(channel, "leave", subscriber->user);
    }
    if (channel != NULL) {
        /* Unlinked first: its worker gets an item only for others there. */
        hub_unlink(hub, channel, subscriber);
        hub->subscription_count--;
        if (frame != NULL) {
            channel->events++;
            hub_post(hub, channel, NULL, frame, 0);
        }
        hub_free_if_idle(hub, channel);
    }
    hub_unlock(hub);
    if (frame != NULL && subscriber->presence_events && subscriber->deliver_event != NULL)
        subscriber->deliver_event(subscriber, frame);
    shared_frame_release(frame);
}

void hub_unsubscribe(struct hub *hub, struct hub_subscriber *subscriber)
{
    if (hub->post != NULL) {
        hub_unsubscribe_shared(hub, subscriber);
        return;
    }
    struct hub_channel *channel = subscriber->channel;
    if (channel == NULL)
        return;
    if (channel->presence && subscriber->user != NULL &&
        hub_member_remove(channel, subscriber->user))
        hub_send_presence(hub, channel, "leave", subscriber->user);
    hub_unlink(hub, channel, subscriber);
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

/* Numbers message and keeps it in the history ring. Returns its channel,
 * or NULL when out of memory. */
static struct hub_channel *hub_number(struct hub *hub, struct message *message,
                                      const struct channel_rule *rule, int64_t now, char *epoch)
{
    struct hub_channel *channel = hub_find_or_create(hub, message->channel, rule);
    if (channel == NULL)
        return NULL;
    if (epoch != NULL)
        memcpy(epoch, channel->epoch, HUB_EPOCH_SIZE);
    uint64_t seq = ++channel->seq;
    /* A publisher may have built the envelope with the seq it expected;
     * another worker's publish got that one first. */
    if (message->seq != seq)
        message_forget_envelope(message);
    message->seq = seq;
    message->published_at = now;
    hub_history_expire(channel, now);
    hub_history_push(channel, message);
    return channel;
}

/* Shared hub: the message goes to every worker with subscribers, in the
 * order of the lock, so every worker sees a channel's seq ascending. */
static long hub_publish_shared(struct hub *hub, struct message *message,
                               const struct channel_rule *rule,
                               const struct hub_subscriber *except, int64_t now, char *epoch)
{
    hub_lock(hub);
    struct hub_channel *channel = hub_number(hub, message, rule, now, epoch);
    long deliveries = -1;
    if (channel != NULL) {
        bool skip = except != NULL && except->channel == channel;
        deliveries = (long)channel->subscriber_count - (skip ? 1 : 0);
        hub_post(hub, channel, message, NULL, skip ? except->id : 0);
        hub_free_if_idle(hub, channel);
    }
    hub_unlock(hub);
    return deliveries;
}

long hub_publish(struct hub *hub, struct message *message, const struct channel_rule *rule,
                 const struct hub_subscriber *except, int64_t now, char *epoch)
{
    if (hub->post != NULL)
        return hub_publish_shared(hub, message, rule, except, now, epoch);
    struct hub_channel *channel = hub_number(hub, message, rule, now, epoch);
    if (channel == NULL)
        return -1;
    /* A receiver may unsubscribe itself while being delivered to: read next
     * first and stop at the snapshot's end. The channel itself survives the
     * loop: it is only freed below. */
    long deliveries = 0;
    size_t remaining = channel->locals[0].count;
    struct hub_subscriber *subscriber = channel->locals[0].first;
    channel->pins++;   /* keeps hub_unsubscribe from freeing it */
    while (subscriber != NULL && remaining-- > 0) {
        struct hub_subscriber *next = subscriber->next;
        if (subscriber != except) {
            subscriber->deliver(subscriber, message);
            deliveries++;
        }
        subscriber = next;
    }
    channel->pins--;
    hub_free_if_idle(hub, channel);
    return deliveries;
}

/* Whether subscriber takes item: not the one excepted, a message it has
 * not had yet (seq only ascends), an event sent after it joined. */
static bool hub_item_for(const struct hub_item *item, const struct hub_subscriber *subscriber)
{
    if (subscriber->id == item->except)
        return false;
    if (item->message != NULL)
        return item->message->seq > subscriber->last_seq;
    return item->stamp > subscriber->events_from && subscriber->presence_events &&
           subscriber->deliver_event != NULL;
}

size_t hub_deliver_item(struct hub *hub, unsigned worker, struct hub_item *item)
{
    size_t bytes = 0;   /* the item's length once it reached someone */
    /* This list changes only on this thread, so it is walked unlocked; the
     * pin keeps the channel. A receiver may unsubscribe itself. */
    struct hub_local *local = &item->channel->locals[worker];
    size_t remaining = local->count;
    struct hub_subscriber *subscriber = local->first;
    while (subscriber != NULL && remaining-- > 0) {
        struct hub_subscriber *next = subscriber->next;
        if (item->message != NULL && item->generation != subscriber->generation) {
            /* Cluster numbering started over: follow the new one; an
             * item of an older one (queued before) is not for it. */
            if (item->generation < subscriber->generation) {
                subscriber = next;
                continue;
            }
            subscriber->generation = item->generation;
            subscriber->last_seq = 0;
        }
        if (hub_item_for(item, subscriber)) {
            if (item->message != NULL) {
                subscriber->last_seq = item->message->seq;
                subscriber->deliver(subscriber, item->message);
                bytes = item->message->length;
            } else {
                subscriber->deliver_event(subscriber, item->frame);
                bytes = item->frame->length;
            }
        }
        subscriber = next;
    }
    hub_discard_item(hub, item);
    return bytes;
}

long hub_publish_numbered(struct hub *hub, struct message *message, const char *epoch,
                          uint64_t except)
{
    hub_lock(hub);
    struct hub_channel *channel = hub_find(hub, message->channel);
    long deliveries = 0;
    if (channel != NULL && channel->subscriber_count > 0) {
        if (strcmp(channel->epoch, epoch) != 0) {
            if (channel->seq > 0 || channel->generation > 0)
                channel->generation++;
            snprintf(channel->epoch, sizeof(channel->epoch), "%s", epoch);
            channel->seq = 0;
        }
        if (message->seq > channel->seq)
            channel->seq = message->seq;
        deliveries = (long)channel->subscriber_count;
        hub_post(hub, channel, message, NULL, except);
    }
    hub_unlock(hub);
    return deliveries;
}

bool hub_deliver_presence(struct hub *hub, const char *name, bool join, const char *user)
{
    hub_lock(hub);
    struct hub_channel *channel = hub_find(hub, name);
    bool delivered = channel != NULL && channel->subscriber_count > 0;
    if (delivered)
        hub_send_presence_frame(hub, channel, join ? "join" : "leave", user);
    hub_unlock(hub);
    return delivered;
}

void hub_discard_item(struct hub *hub, struct hub_item *item)
{
    message_release(item->message);
    shared_frame_release(item->frame);
    hub_lock(hub);
    item->channel->pins--;
    hub_free_if_idle(hub, item->channel);
    hub_unlock(hub);
    item->channel = NULL;
    item->message = NULL;
    item->frame = NULL;
}

static void hub_position_locked(const struct hub_subscriber *subscriber, bool has_since,
                                uint64_t since, const char *epoch, int64_t now,
                                struct hub_position *position)
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

void hub_position(struct hub *hub, const struct hub_subscriber *subscriber, bool has_since,
                  uint64_t since, const char *epoch, int64_t now, struct hub_position *position)
{
    hub_lock(hub);
    hub_position_locked(subscriber, has_since, since, epoch, now, position);
    hub_unlock(hub);
}

uint64_t hub_next_seq(const struct hub *hub, const char *name)
{
    hub_lock(hub);
    const struct hub_channel *channel = hub_find(hub, name);
    uint64_t next = channel != NULL ? channel->seq + 1 : 1;
    hub_unlock(hub);
    return next;
}

/* The held messages with seq > after, retained, oldest first; *count of
 * them. NULL with *count 0 when none (or out of memory: nothing replayed). */
static struct message **hub_replay_collect(struct hub_channel *channel, uint64_t after,
                                           int64_t now, unsigned *count)
{
    *count = 0;
    hub_history_expire(channel, now);
    struct message **held =
        channel->history_count > 0 ? malloc(channel->history_count * sizeof(*held)) : NULL;
    for (unsigned i = 0; held != NULL && i < channel->history_count; i++) {
        struct message *message = hub_history_at(channel, i);
        if (message->seq > after)
            held[(*count)++] = message_retain(message);
    }
    return held;
}

void hub_replay(struct hub *hub, struct hub_subscriber *subscriber, uint64_t after, int64_t now)
{
    hub_lock(hub);
    struct hub_channel *channel = subscriber->channel;
    unsigned count = 0;
    struct message **held = channel != NULL ? hub_replay_collect(channel, after, now, &count)
                                            : NULL;
    hub_unlock(hub);
    /* Delivered unlocked: a receiver may unsubscribe itself, which stops
     * the replay. What it gets here it is not handed again by its worker. */
    for (unsigned i = 0; i < count; i++) {
        if (subscriber->channel == channel) {
            if (held[i]->seq > subscriber->last_seq)
                subscriber->last_seq = held[i]->seq;
            subscriber->deliver(subscriber, held[i]);
        }
        message_release(held[i]);
    }
    free(held);
}

void hub_expire(struct hub *hub, int64_t now)
{
    hub_lock(hub);
    for (size_t i = 0; i < hub->bucket_count; i++) {
        struct hub_channel *channel = hub->buckets[i];
        while (channel != NULL) {
            struct hub_channel *next = channel->bucket_next;
            hub_history_expire(channel, now);
            hub_free_if_idle(hub, channel);
            channel = next;
        }
    }
    hub_unlock(hub);
}

/* ------------------------------------------------------------ queries */

static void hub_fill_info(const struct hub_channel *channel, struct hub_channel_info *info)
{
    info->name = channel->name;
    info->subscribers = channel->subscriber_count;
    info->seq = channel->seq;
    memcpy(info->epoch, channel->epoch, sizeof(info->epoch));
    info->presence = channel->presence;
}

bool hub_channel_info(const struct hub *hub, const char *name, struct hub_channel_info *info)
{
    hub_lock(hub);
    const struct hub_channel *channel = hub_find(hub, name);
    if (channel != NULL) {
        hub_fill_info(channel, info);
        info->name = name;   /* the caller's, valid after the unlock */
    }
    hub_unlock(hub);
    return channel != NULL;
}

void hub_each_channel(const struct hub *hub,
                      void (*visit)(const struct hub_channel_info *info, void *arg), void *arg)
{
    hub_lock(hub);
    for (size_t i = 0; i < hub->bucket_count; i++) {
        for (const struct hub_channel *channel = hub->buckets[i]; channel != NULL;
             channel = channel->bucket_next) {
            struct hub_channel_info info;
            hub_fill_info(channel, &info);
            visit(&info, arg);
        }
    }
    hub_unlock(hub);
}

void hub_each_user(const struct hub *hub, const char *name,
                   void (*visit)(const char *user, void *arg), void *arg)
{
    hub_lock(hub);
    const struct hub_channel *channel = hub_find(hub, name);
    for (size_t i = 0; channel != NULL && i < channel->member_count; i++)
        visit(channel->members[i].user, arg);
    hub_unlock(hub);
}

void hub_stats(const struct hub *hub, struct hub_stats *stats)
{
    hub_lock(hub);
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
                                    c->member_capacity * sizeof(*c->members) +
                                    hub->workers * sizeof(*c->locals);
        }
    }
    hub_unlock(hub);
}
