/* hub — channels by name: their subscribers, message numbering (seq and
 * epoch), the history ring and presence. Knows nothing of sockets: it hands
 * published messages and presence frames to subscriber callbacks, and every
 * receiver shares the message's encodings.
 *
 * A channel exists while it has subscribers or holds history; an idle one
 * is freed, and a channel created again gets a new epoch, so a client that
 * resumes with an old epoch learns that numbering started over. */
#ifndef WSBROKER_HUB_H
#define WSBROKER_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "message.h"
#include "shared_frame.h"

struct hub;
struct hub_channel;

#define HUB_EPOCH_SIZE 24

/* Embedded in whatever subscribes. The hub links it into one channel. */
struct hub_subscriber {
    struct hub_subscriber *previous;   /* private */
    struct hub_subscriber *next;       /* private */
    struct hub_channel *channel;       /* private: NULL when not subscribed */
    const char *user;                  /* presence identity; the owner keeps
                                          it alive while subscribed */
    bool presence_events;              /* receives join/leave frames */
    /* Called once per published or replayed message. May unsubscribe its
     * own subscriber, no other. */
    void (*deliver)(struct hub_subscriber *subscriber, struct message *message);
    /* Called with a join/leave text frame when presence_events is set. */
    void (*deliver_event)(struct hub_subscriber *subscriber, struct shared_frame *frame);
};

struct hub_stats {
    size_t channels;
    size_t subscriptions;
    size_t history_messages;
    size_t channel_bytes;      /* channels, their held messages
                                  (message_footprint), history rings and
                                  presence member lists */
};

struct hub *hub_new(void);
/* Frees the hub and the history it holds. Every subscriber must have
 * unsubscribed. */
void hub_free(struct hub *hub);

/* Adds subscriber (not subscribed elsewhere) to the channel named name,
 * creating it with rule's history and presence settings when it does not
 * exist. Sends nothing. Returns 1 when this made subscriber->user a new
 * member of a presence channel (the caller then calls hub_announce_join once
 * it has written its own reply), 0 otherwise, -1 when out of memory. */
int hub_subscribe(struct hub *hub, const char *name, const struct channel_rule *rule,
                  struct hub_subscriber *subscriber);

/* Sends {"op":"join",...} for subscriber's user to every member of its
 * channel, the subscriber included. */
void hub_announce_join(struct hub *hub, struct hub_subscriber *subscriber);

/* Removes subscriber from its channel. When it was its user's last
 * connection on a presence channel, {"op":"leave",...} goes to every member
 * first, the leaving subscriber included. Frees the channel when idle. */
void hub_unsubscribe(struct hub *hub, struct hub_subscriber *subscriber);

/* Publishes message on message->channel: sets its seq and published_at
 * (now, monotonic milliseconds, like every now below), keeps it in the history ring, and delivers it to
 * every subscriber except except (may be NULL), in subscription order.
 * rule is used when the channel has to be created. When epoch is not NULL
 * the channel's epoch is copied there. Returns the number of deliveries, or
 * -1 when out of memory (nothing was delivered). */
long hub_publish(struct hub *hub, struct message *message, const struct channel_rule *rule,
                 const struct hub_subscriber *except, int64_t now, char *epoch);

/* Where a (re)subscribing client stands in its channel's numbering. */
struct hub_position {
    uint64_t seq;                      /* the channel's last seq */
    char epoch[HUB_EPOCH_SIZE];
    bool recovered;                    /* every message after since is held */
    uint64_t replay_after;             /* replay held messages with seq > this */
};

/* Computes the position of a subscribed subscriber. Without since, nothing
 * is to be replayed. With since: epoch (may be NULL = the current one)
 * different from the channel's, or messages after since no longer held,
 * gives recovered = false and a replay of everything held. */
void hub_position(const struct hub_subscriber *subscriber, bool has_since, uint64_t since,
                  const char *epoch, int64_t now, struct hub_position *position);

/* The seq the next message published on the channel named name gets. */
uint64_t hub_next_seq(const struct hub *hub, const char *name);

/* Delivers the held messages with seq > after to subscriber, in order. */
void hub_replay(struct hub *hub, struct hub_subscriber *subscriber, uint64_t after, int64_t now);

/* Drops history older than its channel's ttl and frees idle channels. */
void hub_expire(struct hub *hub, int64_t now);

/* Information about one channel, for the API. */
struct hub_channel_info {
    const char *name;
    size_t subscribers;
    uint64_t seq;
    const char *epoch;
    bool presence;
};

/* Fills info for the channel named name. Returns false when it does not exist. */
bool hub_channel_info(const struct hub *hub, const char *name, struct hub_channel_info *info);

/* Calls visit for every channel (in no particular order). */
void hub_each_channel(const struct hub *hub,
                      void (*visit)(const struct hub_channel_info *info, void *arg), void *arg);

/* Calls visit for every user present on the channel named name, sorted. */
void hub_each_user(const struct hub *hub, const char *name,
                   void (*visit)(const char *user, void *arg), void *arg);

/* Counts; walks every held message, so it is for /metrics, not hot paths. */
void hub_stats(const struct hub *hub, struct hub_stats *stats);

#endif
