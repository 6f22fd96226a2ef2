/* cluster — this node's link to the other brokers through Redis (cluster
 * mode, the `cluster` group): publishes are numbered and kept in Redis and
 * reach every node through its PUBLISH; a node SUBSCRIBEs to the channels
 * it has subscribers for; history and presence live in Redis.
 *
 * Threads: the Redis client (two hiredis connections: commands and
 * SUBSCRIBE) runs on the main thread's event loop. Workers hand it
 * requests through a locked queue; each answer goes back to the worker
 * that asked, through its inbox, and reaches its requester through a
 * waiter: the requester may be gone by then, and the waiter says so.
 *
 * Built only with hiredis (configure --with-redis); without it the
 * functions below are stubs and cluster mode cannot be configured. */
#ifndef WSBROKER_CLUSTER_H
#define WSBROKER_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "config.h"
#include "hub.h"
#include "message.h"

struct server;
struct worker;
struct cluster;

/* Held by a requester (a pubsub session, an HTTP connection) for as long
 * as it lives; every request it makes holds it too. */
struct cluster_waiter {
    unsigned refs;                  /* atomic */
    void *owner;                    /* NULL once gone; its worker's thread only */
};

static inline struct cluster_waiter *cluster_waiter_new(void *owner)
{
    struct cluster_waiter *waiter = malloc(sizeof(*waiter));
    if (waiter != NULL)
        *waiter = (struct cluster_waiter){ .refs = 1, .owner = owner };
    return waiter;
}

static inline struct cluster_waiter *cluster_waiter_retain(struct cluster_waiter *waiter)
{
    if (waiter != NULL)
        __atomic_add_fetch(&waiter->refs, 1, __ATOMIC_RELAXED);
    return waiter;
}

static inline void cluster_waiter_release(struct cluster_waiter *waiter)
{
    if (waiter != NULL && __atomic_sub_fetch(&waiter->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free(waiter);
}

/* The owner is going away: answers still on their way find no owner. */
static inline void cluster_waiter_orphan(struct cluster_waiter *waiter)
{
    if (waiter != NULL) {
        waiter->owner = NULL;
        cluster_waiter_release(waiter);
    }
}

/* An answer, valid during the done call only. ok false: Redis is down or
 * failed (error says how, for logs). */
struct cluster_reply {
    bool ok;
    const char *error;
    uint64_t seq;                   /* publish: the message's; position: the channel's */
    char epoch[HUB_EPOCH_SIZE];
    struct message **held;          /* position: held messages, oldest first */
    size_t held_count;
    char **users;                   /* presence: sorted, each once */
    size_t user_count;
};

/* Runs on the requesting worker's thread; owner is NULL when the requester
 * is gone (tag is then only to be freed). */
typedef void cluster_done_fn(struct worker *worker, void *owner, void *tag,
                             const struct cluster_reply *reply);

struct cluster_stats {
    bool up;
    uint64_t reconnects;
    uint64_t publish_failures;      /* refused at once or failed */
    uint64_t publish_queue_full;    /* of which: too many pending */
    uint64_t messages_received;
    uint64_t dropped_unsubscribed;  /* arrived for a channel nobody here has */
    uint64_t dropped_malformed;
};

/* How many publishes may wait for Redis at once; more are refused. */
#define CLUSTER_PENDING_MAX 10000
/* Presence entries live this long without a heartbeat (ms); heartbeats
 * come every third of it. */
#define CLUSTER_PRESENCE_TTL_MS 6000

#ifdef HAVE_REDIS

/* Sets up the client on server->base for config's cluster group and makes
 * server->hub a cluster hub. Connects once the loop runs. NULL on failure. */
struct cluster *cluster_new(struct server *server);
void cluster_free(struct cluster *cluster);

/* Publishes message (retained until done) under rule: done gets seq and
 * epoch. except: the subscriber id on this node not to deliver to (0:
 * none). done may be NULL (a broadcast route: no answer). Returns false
 * when refused at once (Redis down, too many pending: counted), and done
 * is then not called. */
bool cluster_publish(struct cluster *cluster, struct worker *worker, struct message *message,
                     const struct channel_rule *rule, uint64_t except,
                     struct cluster_waiter *waiter, cluster_done_fn *done, void *tag);

/* The channel's seq and epoch, and its held messages when history is
 * set, once this node is SUBSCRIBEd to it in Redis (so nothing falls
 * between what is read and what arrives live). False when Redis is down. */
bool cluster_position(struct cluster *cluster, struct worker *worker, const char *channel,
                      const struct channel_rule *rule, bool history,
                      struct cluster_waiter *waiter, cluster_done_fn *done, void *tag);

/* The users present on the channel across the cluster. */
bool cluster_presence(struct cluster *cluster, struct worker *worker, const char *channel,
                      struct cluster_waiter *waiter, cluster_done_fn *done, void *tag);

bool cluster_is_up(const struct cluster *cluster);
void cluster_get_stats(const struct cluster *cluster, struct cluster_stats *stats);

#else

static inline struct cluster *cluster_new(struct server *server) { (void)server; return NULL; }
static inline void cluster_free(struct cluster *cluster) { (void)cluster; }
static inline bool cluster_publish(struct cluster *cluster, struct worker *worker,
                                   struct message *message, const struct channel_rule *rule,
                                   uint64_t except, struct cluster_waiter *waiter,
                                   cluster_done_fn *done, void *tag)
{
    (void)cluster; (void)worker; (void)message; (void)rule; (void)except; (void)waiter;
    (void)done; (void)tag;
    return false;
}
static inline bool cluster_position(struct cluster *cluster, struct worker *worker,
                                    const char *channel, const struct channel_rule *rule,
                                    bool history, struct cluster_waiter *waiter,
                                    cluster_done_fn *done, void *tag)
{
    (void)cluster; (void)worker; (void)channel; (void)rule; (void)history; (void)waiter;
    (void)done; (void)tag;
    return false;
}
static inline bool cluster_presence(struct cluster *cluster, struct worker *worker,
                                    const char *channel, struct cluster_waiter *waiter,
                                    cluster_done_fn *done, void *tag)
{
    (void)cluster; (void)worker; (void)channel; (void)waiter; (void)done; (void)tag;
    return false;
}
static inline bool cluster_is_up(const struct cluster *cluster) { (void)cluster; return false; }
static inline void cluster_get_stats(const struct cluster *cluster, struct cluster_stats *stats)
{
    (void)cluster;
    *stats = (struct cluster_stats){ 0 };
}

#endif

#endif
