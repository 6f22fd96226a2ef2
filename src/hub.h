/* hub — channels by name: their subscribers, message numbering (seq and
 * epoch), the history ring and presence. Knows nothing of sockets: it hands
 * published messages and presence frames to subscriber callbacks, and every
 * receiver shares the message's encodings.
 *
 * A channel exists while it has subscribers or holds history; an idle one
 * is freed, and a channel created again gets a new epoch, so a client that
 * resumes with an old epoch learns that numbering started over.
 *
 * Threads: a hub made by hub_new serves one thread and delivers
 * synchronously. A hub made by hub_new_shared serves several worker
 * threads: its state is behind one mutex, every subscriber belongs to one
 * worker (and is only subscribed, unsubscribed and delivered to on that
 * worker's thread), and a publish or presence event is handed, under the
 * lock and so in one order for every worker, to each worker that has
 * subscribers on the channel as a hub_item; the worker later calls
 * hub_deliver_item on its own thread. The lock is never held while calling
 * a subscriber. */
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
    uint64_t id;                       /* private: unique per subscription */
    uint64_t last_seq;                 /* private: highest seq handed to it */
    uint64_t events_from;              /* private: presence events after this */
    uint64_t generation;               /* private: cluster numbering it follows */
    unsigned worker;                   /* the worker it lives on (0 for hub_new) */
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

/* One delivery for one worker: a message (or a presence frame) for that
 * worker's subscribers of channel. Holds references until delivered or
 * discarded. */
struct hub_item {
    struct hub_channel *channel;       /* pinned: not freed meanwhile */
    struct message *message;           /* retained, or NULL */
    struct shared_frame *frame;        /* retained presence frame, or NULL */
    uint64_t except;                   /* subscriber id skipped; 0: none */
    uint64_t stamp;                    /* the channel's event count for a frame */
    uint64_t generation;               /* cluster: the channel's numbering */
};

/* Hands item (copied) to worker's queue; called with the hub locked, so it
 * must only queue and wake, never deliver. Returns false when it could not
 * (out of memory): that worker's receivers then miss it, a gap in seq as
 * for a slow reader. */
typedef bool hub_post_fn(void *arg, unsigned worker, const struct hub_item *item);

/* A hub for one thread: deliveries are direct calls. */
struct hub *hub_new(void);

/* A hub shared by workers threads (at least 2), delivering through post. */
struct hub *hub_new_shared(unsigned workers, hub_post_fn *post, void *post_arg);

/* What a cluster hub tells its cluster, with the hub locked (so in the
 * order things happened): a channel got its first subscriber on this node
 * or lost its last one, a user became a member of a presence channel here
 * or left it (user NULL for interest). Must only queue. */
enum hub_cluster_event {
    HUB_CLUSTER_INTEREST_ON,
    HUB_CLUSTER_INTEREST_OFF,
    HUB_CLUSTER_JOIN,
    HUB_CLUSTER_LEAVE,
};
typedef void hub_cluster_fn(void *arg, enum hub_cluster_event event, const char *channel,
                            const char *user);

/* A shared hub (workers >= 1, always delivering through post) for cluster
 * mode: messages are numbered elsewhere and come in through
 * hub_publish_numbered, channels hold no history, and presence events come
 * in through hub_deliver_presence; membership changes go to cluster. */
struct hub *hub_new_cluster(unsigned workers, hub_post_fn *post, void *post_arg,
                            hub_cluster_fn *cluster, void *cluster_arg);

/* Cluster hub: hands message, numbered (seq, epoch) by the cluster, to
 * the workers with subscribers of its channel, except the subscriber with
 * id except (0: none). A new epoch means numbering started over: every
 * subscriber takes seq from 1 again. Returns the deliveries handed on; 0
 * when nobody here is subscribed (the message is then not kept). */
long hub_publish_numbered(struct hub *hub, struct message *message, const char *epoch,
                          uint64_t except);

/* Cluster hub: sends a join or leave frame for user to the channel's
 * members here. Returns false when the channel has no subscriber here. */
bool hub_deliver_presence(struct hub *hub, const char *channel, bool join, const char *user);

/* A subscriber's id (unique in its hub while subscribed; 0 when not). */
uint64_t hub_subscriber_id(const struct hub_subscriber *subscriber);

/* The highest seq handed to subscriber so far; a subscriber that holds
 * back deliveries (a cluster subscribe awaiting its position) raises it
 * with hub_subscriber_advance. Own thread only. */
uint64_t hub_subscriber_last_seq(const struct hub_subscriber *subscriber);
void hub_subscriber_advance(struct hub_subscriber *subscriber, uint64_t seq);

/* Whether publishes are delivered synchronously (a hub_new hub). */
bool hub_is_direct(const struct hub *hub);

/* On the thread of worker: delivers item to the worker's subscribers of its
 * channel (each receives a message at most once, in seq order) and drops
 * the item's references. Returns the payload length when it was delivered
 * to anyone (what each receiver's queue grew by at most), else 0. */
size_t hub_deliver_item(struct hub *hub, unsigned worker, struct hub_item *item);

/* Drops the item's references without delivering (shutdown). */
void hub_discard_item(struct hub *hub, struct hub_item *item);

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
 * first, the leaving subscriber included (directly; the others through
 * their workers on a shared hub). Frees the channel when idle. */
void hub_unsubscribe(struct hub *hub, struct hub_subscriber *subscriber);

/* Publishes message on message->channel: sets its seq and published_at
 * (now, monotonic milliseconds, like every now below), keeps it in the history ring, and delivers it to
 * every subscriber except except (may be NULL), in subscription order
 * (a shared hub hands it to the workers instead, see above). Envelope
 * encodings built with a seq other than the one it gets are dropped.
 * rule is used when the channel has to be created. When epoch is not NULL
 * the channel's epoch is copied there. Returns the number of deliveries
 * (made or handed on), or -1 when out of memory (nothing was delivered). */
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
void hub_position(struct hub *hub, const struct hub_subscriber *subscriber, bool has_since,
                  uint64_t since, const char *epoch, int64_t now, struct hub_position *position);

/* The seq the next message published on the channel named name gets. */
uint64_t hub_next_seq(const struct hub *hub, const char *name);

/* Delivers the held messages with seq > after to subscriber, in order
 * (copied under the lock, delivered outside it). */
void hub_replay(struct hub *hub, struct hub_subscriber *subscriber, uint64_t after, int64_t now);

/* Drops history older than its channel's ttl and frees idle channels. */
void hub_expire(struct hub *hub, int64_t now);

/* Information about one channel, for the API. */
struct hub_channel_info {
    const char *name;                  /* valid during the call only */
    size_t subscribers;
    uint64_t seq;
    char epoch[HUB_EPOCH_SIZE];
    bool presence;
};

/* Fills info for the channel named name. Returns false when it does not exist. */
bool hub_channel_info(const struct hub *hub, const char *name, struct hub_channel_info *info);

/* Calls visit for every channel (in no particular order), with the hub
 * locked: visit must not call into the hub. */
void hub_each_channel(const struct hub *hub,
                      void (*visit)(const struct hub_channel_info *info, void *arg), void *arg);

/* Calls visit for every user present on the channel named name, sorted,
 * with the hub locked. */
void hub_each_user(const struct hub *hub, const char *name,
                   void (*visit)(const char *user, void *arg), void *arg);

/* Counts; walks every held message, so it is for /metrics, not hot paths. */
void hub_stats(const struct hub *hub, struct hub_stats *stats);

#endif
