/* hub — channels by name and their subscribers. Knows nothing of sockets or
 * framing: it hands a refcounted, already-encoded message to each subscriber
 * of a channel, so one encoding serves every receiver. A channel exists only
 * while it has subscribers. */
#ifndef WSBROKER_HUB_H
#define WSBROKER_HUB_H

#include <stddef.h>
#include <stdint.h>

struct hub;
struct hub_channel;

/* Bytes shared by every receiver of one publish. Immutable once published. */
struct hub_message {
    unsigned refcount;
    size_t length;
    uint8_t bytes[];
};

/* A message with room for length bytes and refcount 1; NULL when out of memory. */
struct hub_message *hub_message_new(size_t length);
struct hub_message *hub_message_retain(struct hub_message *message);
void hub_message_release(struct hub_message *message);   /* NULL ok */

/* Embedded in whatever subscribes (a connection). The hub links it into the
 * channel; deliver is called once per publish. deliver may unsubscribe its
 * own subscriber but no other one. */
struct hub_subscriber {
    struct hub_subscriber *previous;   /* private */
    struct hub_subscriber *next;       /* private */
    struct hub_channel *channel;       /* private: NULL when not subscribed */
    void (*deliver)(struct hub_subscriber *subscriber, struct hub_message *message);
};

struct hub *hub_new(void);
/* Frees the hub. Every subscriber must have unsubscribed. */
void hub_free(struct hub *hub);

/* Adds subscriber (not subscribed elsewhere) to the channel named name,
 * creating the channel. Returns 0, or -1 when out of memory. */
int hub_subscribe(struct hub *hub, const char *name, struct hub_subscriber *subscriber);

/* Removes subscriber from its channel, freeing the channel when it was the
 * last one. Does nothing when it is not subscribed. */
void hub_unsubscribe(struct hub *hub, struct hub_subscriber *subscriber);

/* Calls deliver for every subscriber of the channel except except (may be
 * NULL), in subscription order. Returns the number of deliveries. */
size_t hub_publish(struct hub *hub, const char *name, struct hub_message *message,
                   const struct hub_subscriber *except);

size_t hub_channel_count(const struct hub *hub);
/* Subscribers of the channel named name (0 when it does not exist). */
size_t hub_subscriber_count(const struct hub *hub, const char *name);

#endif
