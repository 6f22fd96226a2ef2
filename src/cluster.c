#include "cluster.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/sha.h>

#include "cluster_codec.h"
#include "log.h"
#include "seeded_hash.h"
#include "server.h"
#include "worker.h"

/* Reconnecting: the first retry after this, doubling up to the max, each
 * with up to a quarter more at random so nodes do not retry in step. */
#define CLUSTER_BACKOFF_MIN_MS 100
#define CLUSTER_BACKOFF_MAX_MS 5000
/* hiredis has no connect timeout of its own. */
#define CLUSTER_CONNECT_TIMEOUT_MS 2000
/* A Redis that stops answering (stopped, overloaded, network gone) counts
 * as lost after this, so requests fail instead of waiting forever. */
#define CLUSTER_COMMAND_TIMEOUT_MS 3000
#define CLUSTER_TICK_MS 250
/* A channel's seq and epoch keys live this long after its last publish
 * or subscribe; after that its numbering starts over (a new epoch). */
#define CLUSTER_IDLE_EXPIRY "86400"
#define CLUSTER_BUCKETS 4096

enum cluster_op {
    CLUSTER_OP_PUBLISH,
    CLUSTER_OP_POSITION,
    CLUSTER_OP_PRESENCE,
    CLUSTER_OP_INTEREST,
    CLUSTER_OP_JOIN,
    CLUSTER_OP_LEAVE,
};

struct cluster_request {
    struct cluster_request *next;
    enum cluster_op op;
    struct cluster *cluster;
    unsigned worker;
    struct cluster_waiter *waiter;       /* retained; NULL without done */
    cluster_done_fn *done;
    void *tag;
    char *channel;
    char *user;                          /* JOIN, LEAVE */
    struct message *message;             /* PUBLISH, retained */
    unsigned history;
    unsigned history_ttl;
    bool want_history;                   /* POSITION */
    bool resync;                         /* POSITION after a reconnect: fills the gap */
    bool interest;                       /* INTEREST: on or off */
    uint64_t except;
    struct cluster_reply reply;
};

enum cluster_channel_state {
    CLUSTER_IDLE,
    CLUSTER_SUBSCRIBING,
    CLUSTER_SUBSCRIBED,
    CLUSTER_UNSUBSCRIBING,
};

/* This node's interest in a channel and its Redis subscription, brought
 * together one command at a time (hiredis forgets a channel's callback
 * when an UNSUBSCRIBE reply comes, even with a SUBSCRIBE behind it). */
struct cluster_channel {
    struct cluster_channel *next;
    bool wanted;                         /* it has subscribers here */
    bool resync;                         /* subscribed again after a reconnect */
    enum cluster_channel_state state;
    struct cluster_request *waiting;     /* POSITIONs awaiting SUBSCRIBED */
    char name[];
};

enum cluster_script {
    CLUSTER_SCRIPT_PUBLISH,
    CLUSTER_SCRIPT_POSITION,
    CLUSTER_SCRIPT_PRESENCE_ADD,
    CLUSTER_SCRIPT_PRESENCE_REMOVE,
    CLUSTER_SCRIPT_PRESENCE_REFRESH,
    CLUSTER_SCRIPT_PRESENCE_LIST,
    CLUSTER_SCRIPTS,
};

struct cluster {
    struct server *server;
    struct event_base *base;
    struct config *config;               /* retained: the cluster group */
    const struct cluster_config *settings;
    uint64_t node;
    uint64_t seed;
    redisAsyncContext *command;
    redisAsyncContext *subscriber;
    bool command_connected;
    bool subscriber_connected;
    bool up;                             /* atomic: read by /healthz */
    bool ever_up;
    bool warned_down;
    bool closing;
    unsigned backoff_ms;
    int64_t connect_started;
    int64_t last_progress;               /* a reply, or the first command sent */
    unsigned in_flight;                  /* commands awaiting their reply */
    int64_t last_heartbeat;
    struct event *wake;
    struct event *retry;
    struct event *tick;
    pthread_mutex_t lock;
    struct cluster_request *queue_head;  /* under lock */
    struct cluster_request *queue_tail;
    unsigned pending_publishes;          /* atomic: queued or sent */
    struct cluster_channel *buckets[CLUSTER_BUCKETS];
    char sha[CLUSTER_SCRIPTS][SHA_DIGEST_LENGTH * 2 + 1];
    /* atomic counters */
    uint64_t reconnects;
    uint64_t publish_failures;
    uint64_t publish_queue_full;
    uint64_t messages_received;
    uint64_t dropped_unsubscribed;
    uint64_t dropped_malformed;
};

static const char *const cluster_script_text[CLUSTER_SCRIPTS] = {
    cluster_publish_script, cluster_position_script, cluster_presence_add_script,
    cluster_presence_remove_script, cluster_presence_refresh_script,
    cluster_presence_list_script,
};

static void cluster_count(uint64_t *counter)
{
    __atomic_add_fetch(counter, 1, __ATOMIC_RELAXED);
}

static struct log *cluster_log(struct cluster *cluster)
{
    return &cluster->server->log;
}

/* ------------------------------------------------------------ keys */

/* prefix + kind + name, malloc'd. */
static char *cluster_key(const struct cluster *cluster, const char *kind, const char *name)
{
    size_t length = strlen(cluster->settings->prefix) + strlen(kind) + strlen(name) + 1;
    char *key = malloc(length);
    if (key != NULL)
        snprintf(key, length, "%s%s%s", cluster->settings->prefix, kind, name);
    return key;
}

/* The channel a Redis channel name stands for, or NULL. */
static const char *cluster_channel_of(const struct cluster *cluster, const char *redis_channel)
{
    size_t prefix = strlen(cluster->settings->prefix);
    if (strncmp(redis_channel, cluster->settings->prefix, prefix) != 0 ||
        strncmp(redis_channel + prefix, "ch:", 3) != 0)
        return NULL;
    return redis_channel + prefix + 3;
}

/* ------------------------------------------------------------ requests */

static void cluster_reply_clear(struct cluster_reply *reply)
{
    for (size_t i = 0; i < reply->held_count; i++)
        message_release(reply->held[i]);
    free(reply->held);
    for (size_t i = 0; i < reply->user_count; i++)
        free(reply->users[i]);
    free(reply->users);
    memset(reply, 0, sizeof(*reply));
}

static void cluster_request_free(struct cluster_request *request)
{
    cluster_reply_clear(&request->reply);
    cluster_waiter_release(request->waiter);
    message_release(request->message);
    free(request->channel);
    free(request->user);
    free(request);
}

/* On the requesting worker's thread (worker NULL: discarded at shutdown). */
static void cluster_finish_on_worker(struct worker *worker, void *arg)
{
    struct cluster_request *request = arg;
    void *owner = worker != NULL && request->waiter != NULL ? request->waiter->owner : NULL;
    request->done(worker, owner, request->tag, &request->reply);
    cluster_request_free(request);
}

/* The request is answered (reply filled): back to its worker. */
static void cluster_finish(struct cluster *cluster, struct cluster_request *request)
{
    if (request->op == CLUSTER_OP_PUBLISH) {
        __atomic_sub_fetch(&cluster->pending_publishes, 1, __ATOMIC_RELAXED);
        if (!request->reply.ok)
            cluster_count(&cluster->publish_failures);
    }
    if (request->done == NULL) {
        cluster_request_free(request);
        return;
    }
    if (cluster->closing ||
        !worker_post_task(&cluster->server->workers[request->worker], cluster_finish_on_worker,
                          request))
        cluster_finish_on_worker(NULL, request);
}

static void cluster_fail(struct cluster *cluster, struct cluster_request *request,
                         const char *error)
{
    request->reply.ok = false;
    request->reply.error = error;
    cluster_finish(cluster, request);
}

/* Any thread. */
static void cluster_enqueue(struct cluster *cluster, struct cluster_request *request)
{
    pthread_mutex_lock(&cluster->lock);
    bool wake = cluster->queue_head == NULL;
    if (cluster->queue_tail != NULL)
        cluster->queue_tail->next = request;
    else
        cluster->queue_head = request;
    cluster->queue_tail = request;
    pthread_mutex_unlock(&cluster->lock);
    if (wake)
        event_active(cluster->wake, EV_READ, 0);
}

static struct cluster_request *cluster_request_new(struct cluster *cluster, enum cluster_op op,
                                                   struct worker *worker, const char *channel,
                                                   struct cluster_waiter *waiter,
                                                   cluster_done_fn *done, void *tag)
{
    struct cluster_request *request = calloc(1, sizeof(*request));
    if (request == NULL)
        return NULL;
    request->op = op;
    request->cluster = cluster;
    request->worker = worker != NULL ? worker->index : 0;
    request->done = done;
    request->tag = tag;
    request->channel = strdup(channel);
    if (request->channel == NULL) {
        free(request);
        return NULL;
    }
    if (done != NULL)
        request->waiter = cluster_waiter_retain(waiter);
    return request;
}

bool cluster_is_up(const struct cluster *cluster)
{
    return __atomic_load_n(&cluster->up, __ATOMIC_ACQUIRE);
}

bool cluster_publish(struct cluster *cluster, struct worker *worker, struct message *message,
                     const struct channel_rule *rule, uint64_t except,
                     struct cluster_waiter *waiter, cluster_done_fn *done, void *tag)
{
    if (!cluster_is_up(cluster)) {
        cluster_count(&cluster->publish_failures);
        return false;
    }
    if (__atomic_add_fetch(&cluster->pending_publishes, 1, __ATOMIC_RELAXED) >
        CLUSTER_PENDING_MAX) {
        __atomic_sub_fetch(&cluster->pending_publishes, 1, __ATOMIC_RELAXED);
        cluster_count(&cluster->publish_failures);
        cluster_count(&cluster->publish_queue_full);
        return false;
    }
    struct cluster_request *request =
        cluster_request_new(cluster, CLUSTER_OP_PUBLISH, worker, message->channel, waiter, done, tag);
    if (request == NULL) {
        __atomic_sub_fetch(&cluster->pending_publishes, 1, __ATOMIC_RELAXED);
        cluster_count(&cluster->publish_failures);
        return false;
    }
    request->message = message_retain(message);
    request->history = rule->history;
    request->history_ttl = rule->history_ttl;
    request->except = except;
    cluster_enqueue(cluster, request);
    return true;
}

bool cluster_position(struct cluster *cluster, struct worker *worker, const char *channel,
                      const struct channel_rule *rule, bool history,
                      struct cluster_waiter *waiter, cluster_done_fn *done, void *tag)
{
    if (!cluster_is_up(cluster))
        return false;
    struct cluster_request *request =
        cluster_request_new(cluster, CLUSTER_OP_POSITION, worker, channel, waiter, done, tag);
    if (request == NULL)
        return false;
    request->want_history = history && rule->history > 0;
    request->history_ttl = rule->history_ttl;
    cluster_enqueue(cluster, request);
    return true;
}

bool cluster_presence(struct cluster *cluster, struct worker *worker, const char *channel,
                      struct cluster_waiter *waiter, cluster_done_fn *done, void *tag)
{
    if (!cluster_is_up(cluster))
        return false;
    struct cluster_request *request =
        cluster_request_new(cluster, CLUSTER_OP_PRESENCE, worker, channel, waiter, done, tag);
    if (request == NULL)
        return false;
    cluster_enqueue(cluster, request);
    return true;
}

/* hub_cluster_fn: with the hub locked, so only queued. Out of memory, an
 * interest change is lost: the channel's Redis subscription is then set
 * right at the next reconnect. */
static void cluster_hub_event(void *arg, enum hub_cluster_event event, const char *channel,
                              const char *user)
{
    struct cluster *cluster = arg;
    static const enum cluster_op ops[] = {
        [HUB_CLUSTER_INTEREST_ON] = CLUSTER_OP_INTEREST,
        [HUB_CLUSTER_INTEREST_OFF] = CLUSTER_OP_INTEREST,
        [HUB_CLUSTER_JOIN] = CLUSTER_OP_JOIN,
        [HUB_CLUSTER_LEAVE] = CLUSTER_OP_LEAVE,
    };
    struct cluster_request *request =
        cluster_request_new(cluster, ops[event], NULL, channel, NULL, NULL, NULL);
    if (request == NULL)
        return;
    request->interest = event == HUB_CLUSTER_INTEREST_ON;
    if (user != NULL && (request->user = strdup(user)) == NULL) {
        cluster_request_free(request);
        return;
    }
    cluster_enqueue(cluster, request);
}

/* ------------------------------------------------------------ channels */

static size_t cluster_bucket(const struct cluster *cluster, const char *name)
{
    return seeded_hash_bytes(cluster->seed, name, strlen(name)) % CLUSTER_BUCKETS;
}

static struct cluster_channel *cluster_channel_find(struct cluster *cluster, const char *name)
{
    for (struct cluster_channel *c = cluster->buckets[cluster_bucket(cluster, name)]; c != NULL;
         c = c->next) {
        if (strcmp(c->name, name) == 0)
            return c;
    }
    return NULL;
}

static struct cluster_channel *cluster_channel_get(struct cluster *cluster, const char *name)
{
    struct cluster_channel *channel = cluster_channel_find(cluster, name);
    if (channel != NULL)
        return channel;
    size_t length = strlen(name);
    channel = calloc(1, sizeof(*channel) + length + 1);
    if (channel == NULL)
        return NULL;
    memcpy(channel->name, name, length + 1);
    size_t bucket = cluster_bucket(cluster, name);
    channel->next = cluster->buckets[bucket];
    cluster->buckets[bucket] = channel;
    return channel;
}

static void cluster_channel_drop_if_idle(struct cluster *cluster, struct cluster_channel *channel)
{
    if (channel->wanted || channel->state != CLUSTER_IDLE || channel->waiting != NULL)
        return;
    struct cluster_channel **link = &cluster->buckets[cluster_bucket(cluster, channel->name)];
    while (*link != channel)
        link = &(*link)->next;
    *link = channel->next;
    free(channel);
}

static void cluster_subscribe_cb(redisAsyncContext *context, void *reply, void *arg);

static void cluster_send_subscription(struct cluster *cluster, struct cluster_channel *channel,
                                      bool subscribe)
{
    char *name = cluster_key(cluster, "ch:", channel->name);
    if (name == NULL)
        return;
    const char *argv[2] = { subscribe ? "SUBSCRIBE" : "UNSUBSCRIBE", name };
    size_t lengths[2] = { strlen(argv[0]), strlen(name) };
    if (redisAsyncCommandArgv(cluster->subscriber, cluster_subscribe_cb, cluster, 2, argv,
                              lengths) == REDIS_OK)
        channel->state = subscribe ? CLUSTER_SUBSCRIBING : CLUSTER_UNSUBSCRIBING;
    free(name);
}

/* One command at a time per channel, towards what this node wants. */
static void cluster_reconcile(struct cluster *cluster, struct cluster_channel *channel)
{
    if (cluster_is_up(cluster)) {
        if (channel->state == CLUSTER_IDLE && channel->wanted)
            cluster_send_subscription(cluster, channel, true);
        else if (channel->state == CLUSTER_SUBSCRIBED && !channel->wanted &&
                 channel->waiting == NULL)
            cluster_send_subscription(cluster, channel, false);
    }
    cluster_channel_drop_if_idle(cluster, channel);
}

/* ------------------------------------------------------------ commands */

static bool cluster_command(struct cluster *cluster, redisCallbackFn *callback, void *arg,
                            int argc, const char **argv, const size_t *lengths)
{
    if (cluster->command == NULL ||
        redisAsyncCommandArgv(cluster->command, callback, arg, argc, argv, lengths) != REDIS_OK)
        return false;
    if (cluster->in_flight++ == 0)
        cluster->last_progress = server_now();
    return true;
}

static void cluster_answered(struct cluster *cluster)
{
    if (cluster->in_flight > 0)
        cluster->in_flight--;
    cluster->last_progress = server_now();
}

static const char *cluster_reply_error(const redisReply *reply)
{
    if (reply == NULL)
        return "connection to Redis lost";
    if (reply->type == REDIS_REPLY_ERROR)
        return "Redis answered an error";
    return NULL;
}

static void cluster_fresh_epoch(char out[17])
{
    uint64_t random;
    seeded_hash_random(&random, sizeof(random));
    snprintf(out, 17, "%016" PRIx64, random);
}

static void cluster_publish_cb(redisAsyncContext *context, void *data, void *arg)
{
    struct cluster_request *request = arg;
    struct cluster *cluster = request->cluster;
    redisReply *reply = data;
    if (data != NULL || !cluster->closing)
        cluster_answered(cluster);
    const char *error = cluster_reply_error(reply);
    if (error == NULL && (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
                          reply->element[0]->type != REDIS_REPLY_INTEGER ||
                          reply->element[1]->type != REDIS_REPLY_STRING))
        error = "unexpected answer from Redis";
    if (error != NULL) {
        if (reply != NULL)
            log_warn(cluster_log(cluster), "cluster: publish on %s failed: %s%s%s", request->channel,
                     error, reply->type == REDIS_REPLY_ERROR ? ": " : "",
                     reply->type == REDIS_REPLY_ERROR ? reply->str : "");
        cluster_fail(cluster, request, error);
        return;
    }
    request->reply.ok = true;
    request->reply.seq = (uint64_t)reply->element[0]->integer;
    snprintf(request->reply.epoch, sizeof(request->reply.epoch), "%s", reply->element[1]->str);
    cluster_finish(cluster, request);
}

static void cluster_send_publish(struct cluster *cluster, struct cluster_request *request)
{
    struct message *message = request->message;
    char *keys[4] = { cluster_key(cluster, "seq:", request->channel),
                      cluster_key(cluster, "epoch:", request->channel),
                      cluster_key(cluster, "history:", request->channel),
                      cluster_key(cluster, "ch:", request->channel) };
    char history[16], ttl[16], epoch[17], kind[2] = { cluster_kind_letter(message->kind), 0 };
    char node[17], except[17];
    snprintf(history, sizeof(history), "%u", request->history);
    snprintf(ttl, sizeof(ttl), "%u", request->history_ttl);
    cluster_fresh_epoch(epoch);
    snprintf(node, sizeof(node), "%" PRIx64, cluster->node);
    snprintf(except, sizeof(except), "%" PRIx64, request->except);
    const char *from = message->from != NULL ? message->from : "";
    const char *argv[16] = { "EVALSHA", cluster->sha[CLUSTER_SCRIPT_PUBLISH], "3", keys[0], keys[1],
                             keys[2], keys[3], history, ttl, epoch, kind, node, except, from,
                             (const char *)message->payload, CLUSTER_IDLE_EXPIRY };
    size_t lengths[16];
    for (int i = 0; i < 16; i++)
        lengths[i] = argv[i] != NULL ? strlen(argv[i]) : 0;
    lengths[14] = message->length;
    bool sent = keys[0] != NULL && keys[1] != NULL && keys[2] != NULL && keys[3] != NULL &&
                cluster_command(cluster, cluster_publish_cb, request, 16, argv, lengths);
    for (int i = 0; i < 4; i++)
        free(keys[i]);
    if (!sent)
        cluster_fail(cluster, request, "cannot send to Redis");
}

/* A held payload as a numbered message; NULL when malformed. */
static struct message *cluster_message_from(const char *channel, const redisReply *element,
                                            char *epoch)
{
    struct cluster_wire wire;
    if (element->type != REDIS_REPLY_STRING ||
        cluster_wire_decode(element->str, (size_t)element->len, &wire) != 0 ||
        wire.type != CLUSTER_WIRE_MESSAGE)
        return NULL;
    char *from = wire.from != NULL ? strndup(wire.from, wire.from_length) : NULL;
    struct message *message =
        message_new(wire.kind, channel, from, wire.body, wire.body_length);
    free(from);
    if (message != NULL) {
        message->seq = wire.seq;
        message->published_at = server_now();
    }
    if (epoch != NULL)
        memcpy(epoch, wire.epoch, sizeof(wire.epoch));
    return message;
}

static void cluster_position_fill(struct cluster_request *request, const redisReply *reply)
{
    const redisReply *held = reply->element[2];
    request->reply.held = held->elements > 0 ? calloc(held->elements, sizeof(struct message *))
                                             : NULL;
    for (size_t i = 0; request->reply.held != NULL && i < held->elements; i++) {
        struct message *message = cluster_message_from(request->channel, held->element[i], NULL);
        if (message != NULL)
            request->reply.held[request->reply.held_count++] = message;
    }
}

/* What was published while this node was not subscribed (its Redis
 * connection was lost, another node's was not) is in the channel's
 * history: handed to the hub like live messages, whose subscribers take
 * only what they have not had. */
static void cluster_resync_deliver(struct cluster *cluster, struct cluster_request *request)
{
    for (size_t i = 0; i < request->reply.held_count; i++)
        hub_publish_numbered(cluster->server->hub, request->reply.held[i], request->reply.epoch, 0);
}

static void cluster_position_cb(redisAsyncContext *context, void *data, void *arg)
{
    struct cluster_request *request = arg;
    struct cluster *cluster = request->cluster;
    redisReply *reply = data;
    if (data != NULL || !cluster->closing)
        cluster_answered(cluster);
    const char *error = cluster_reply_error(reply);
    if (error == NULL && (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
                          reply->element[0]->type != REDIS_REPLY_INTEGER ||
                          reply->element[1]->type != REDIS_REPLY_STRING ||
                          reply->element[2]->type != REDIS_REPLY_ARRAY))
        error = "unexpected answer from Redis";
    if (error != NULL) {
        cluster_fail(cluster, request, error);
        return;
    }
    request->reply.ok = true;
    request->reply.seq = (uint64_t)reply->element[0]->integer;
    snprintf(request->reply.epoch, sizeof(request->reply.epoch), "%s", reply->element[1]->str);
    cluster_position_fill(request, reply);
    if (request->resync)
        cluster_resync_deliver(cluster, request);
    cluster_finish(cluster, request);
}

static void cluster_send_position(struct cluster *cluster, struct cluster_request *request)
{
    char *keys[3] = { cluster_key(cluster, "seq:", request->channel),
                      cluster_key(cluster, "epoch:", request->channel),
                      cluster_key(cluster, "history:", request->channel) };
    char epoch[17], ttl[16];
    cluster_fresh_epoch(epoch);
    snprintf(ttl, sizeof(ttl), "%u", request->history_ttl);
    const char *argv[10] = { "EVALSHA", cluster->sha[CLUSTER_SCRIPT_POSITION], "3", keys[0], keys[1],
                             keys[2], epoch, request->want_history ? "1" : "0", ttl,
                             CLUSTER_IDLE_EXPIRY };
    size_t lengths[10];
    for (int i = 0; i < 10; i++)
        lengths[i] = argv[i] != NULL ? strlen(argv[i]) : 0;
    bool sent = keys[0] != NULL && keys[1] != NULL && keys[2] != NULL &&
                cluster_command(cluster, cluster_position_cb, request, 10, argv, lengths);
    for (int i = 0; i < 3; i++)
        free(keys[i]);
    if (!sent)
        cluster_fail(cluster, request, "cannot send to Redis");
}

static int cluster_compare_users(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void cluster_presence_fill(struct cluster_request *request, const redisReply *reply)
{
    request->reply.users = reply->elements > 0 ? calloc(reply->elements, sizeof(char *)) : NULL;
    for (size_t i = 0; request->reply.users != NULL && i < reply->elements; i++) {
        const redisReply *member = reply->element[i];
        const char *tab = member->type == REDIS_REPLY_STRING ? strrchr(member->str, '\t') : NULL;
        char *user = tab != NULL ? strndup(member->str, (size_t)(tab - member->str)) : NULL;
        if (user != NULL)
            request->reply.users[request->reply.user_count++] = user;
    }
    char **users = request->reply.users;
    size_t count = request->reply.user_count;
    if (count == 0)
        return;
    qsort(users, count, sizeof(*users), cluster_compare_users);
    size_t kept = 1;
    for (size_t i = 1; i < count; i++) {
        if (strcmp(users[i], users[kept - 1]) == 0)
            free(users[i]);
        else
            users[kept++] = users[i];
    }
    request->reply.user_count = kept;
}

static void cluster_presence_cb(redisAsyncContext *context, void *data, void *arg)
{
    struct cluster_request *request = arg;
    struct cluster *cluster = request->cluster;
    redisReply *reply = data;
    if (data != NULL || !cluster->closing)
        cluster_answered(cluster);
    const char *error = cluster_reply_error(reply);
    if (error == NULL && reply->type != REDIS_REPLY_ARRAY)
        error = "unexpected answer from Redis";
    if (error != NULL) {
        cluster_fail(cluster, request, error);
        return;
    }
    request->reply.ok = true;
    cluster_presence_fill(request, reply);
    cluster_finish(cluster, request);
}

static void cluster_send_presence_list(struct cluster *cluster, struct cluster_request *request)
{
    char *key = cluster_key(cluster, "presence:", request->channel);
    const char *argv[4] = { "EVALSHA", cluster->sha[CLUSTER_SCRIPT_PRESENCE_LIST], "1", key };
    size_t lengths[4] = { 7, strlen(argv[1]), 1, key != NULL ? strlen(key) : 0 };
    bool sent = key != NULL && cluster_command(cluster, cluster_presence_cb, request, 4, argv, lengths);
    free(key);
    if (!sent)
        cluster_fail(cluster, request, "cannot send to Redis");
}

/* Fire and forget: membership, heartbeats, script loads. */
static void cluster_ignore_cb(redisAsyncContext *context, void *data, void *arg)
{
    struct cluster *cluster = context->data;
    redisReply *reply = data;
    if (data != NULL || !cluster->closing)
        cluster_answered(cluster);
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR)
        log_warn(cluster_log(cluster), "cluster: Redis: %s (%s)", reply->str, (const char *)arg);
}

static char *cluster_member(const struct cluster *cluster, const char *user)
{
    size_t length = strlen(user) + 1 + 16 + 1;
    char *member = malloc(length);
    if (member != NULL)
        snprintf(member, length, "%s\t%" PRIx64, user, cluster->node);
    return member;
}

static void cluster_send_membership(struct cluster *cluster, struct cluster_request *request)
{
    bool join = request->op == CLUSTER_OP_JOIN;
    struct cluster_wire wire = { .type = CLUSTER_WIRE_PRESENCE, .join = join, .node = cluster->node,
                                 .from = request->user, .from_length = strlen(request->user) };
    size_t payload_length = 0;
    char *payload = cluster_wire_encode(&wire, &payload_length);
    char *keys[2] = { cluster_key(cluster, "presence:", request->channel),
                      cluster_key(cluster, "ch:", request->channel) };
    char *member = cluster_member(cluster, request->user);
    char ttl[16];
    snprintf(ttl, sizeof(ttl), "%d", CLUSTER_PRESENCE_TTL_MS);
    enum cluster_script script = join ? CLUSTER_SCRIPT_PRESENCE_ADD : CLUSTER_SCRIPT_PRESENCE_REMOVE;
    const char *argv[8] = { "EVALSHA", cluster->sha[script], "2", keys[0], keys[1], member,
                            join ? ttl : payload, payload };
    int argc = join ? 8 : 7;
    size_t lengths[8];
    for (int i = 0; i < argc; i++)
        lengths[i] = argv[i] != NULL ? strlen(argv[i]) : 0;
    if (payload != NULL && keys[0] != NULL && keys[1] != NULL && member != NULL)
        cluster_command(cluster, cluster_ignore_cb, join ? "presence join" : "presence leave",
                        argc, argv, lengths);
    free(payload);
    free(keys[0]);
    free(keys[1]);
    free(member);
    cluster_request_free(request);
}

/* ------------------------------------------------------------ queue */

static void cluster_take_interest(struct cluster *cluster, struct cluster_request *request)
{
    struct cluster_channel *channel = cluster_channel_get(cluster, request->channel);
    if (channel != NULL) {
        channel->wanted = request->interest;
        cluster_reconcile(cluster, channel);
    }
    cluster_request_free(request);
}

/* Read once this node is subscribed, so what is read and what arrives
 * live leave no gap between them. */
static void cluster_take_position(struct cluster *cluster, struct cluster_request *request)
{
    struct cluster_channel *channel = cluster_channel_find(cluster, request->channel);
    if (channel == NULL || channel->state == CLUSTER_SUBSCRIBED ||
        (!channel->wanted && channel->state == CLUSTER_IDLE)) {
        cluster_send_position(cluster, request);
        return;
    }
    request->next = channel->waiting;
    channel->waiting = request;
}

static void cluster_handle(struct cluster *cluster, struct cluster_request *request)
{
    request->next = NULL;
    if (request->op == CLUSTER_OP_INTEREST) {
        cluster_take_interest(cluster, request);
        return;
    }
    if (!cluster_is_up(cluster)) {
        if (request->op == CLUSTER_OP_JOIN || request->op == CLUSTER_OP_LEAVE)
            cluster_request_free(request);   /* heartbeats set presence right again */
        else
            cluster_fail(cluster, request, "Redis is unavailable");
        return;
    }
    switch (request->op) {
    case CLUSTER_OP_PUBLISH:
        cluster_send_publish(cluster, request);
        break;
    case CLUSTER_OP_POSITION:
        cluster_take_position(cluster, request);
        break;
    case CLUSTER_OP_PRESENCE:
        cluster_send_presence_list(cluster, request);
        break;
    case CLUSTER_OP_JOIN:
    case CLUSTER_OP_LEAVE:
        cluster_send_membership(cluster, request);
        break;
    case CLUSTER_OP_INTEREST:
        break;
    }
}

static struct cluster_request *cluster_take_queue(struct cluster *cluster)
{
    pthread_mutex_lock(&cluster->lock);
    struct cluster_request *requests = cluster->queue_head;
    cluster->queue_head = cluster->queue_tail = NULL;
    pthread_mutex_unlock(&cluster->lock);
    return requests;
}

static void cluster_wake_cb(evutil_socket_t fd, short events, void *arg)
{
    struct cluster *cluster = arg;
    struct cluster_request *request = cluster_take_queue(cluster);
    while (request != NULL) {
        struct cluster_request *next = request->next;
        cluster_handle(cluster, request);
        request = next;
    }
}

/* ------------------------------------------------------------ delivery */

static void cluster_deliver_message(struct cluster *cluster, const char *channel,
                                    const redisReply *payload)
{
    char epoch[CLUSTER_EPOCH_MAX + 1];
    struct cluster_wire wire;
    if (cluster_wire_decode(payload->str, (size_t)payload->len, &wire) != 0) {
        cluster_count(&cluster->dropped_malformed);
        return;
    }
    if (wire.type == CLUSTER_WIRE_PRESENCE) {
        char *user = strndup(wire.from, wire.from_length);
        if (user == NULL || !hub_deliver_presence(cluster->server->hub, channel, wire.join, user))
            cluster_count(&cluster->dropped_unsubscribed);
        free(user);
        return;
    }
    struct message *message = cluster_message_from(channel, payload, epoch);
    if (message == NULL) {
        cluster_count(&cluster->dropped_malformed);
        return;
    }
    uint64_t except = wire.node == cluster->node ? wire.except : 0;
    if (hub_publish_numbered(cluster->server->hub, message, epoch, except) == 0)
        cluster_count(&cluster->dropped_unsubscribed);
    message_release(message);
}

static void cluster_send_resync(struct cluster *cluster, struct cluster_channel *channel)
{
    const struct channel_rule *rule = config_channel_rule(cluster->server->config, channel->name);
    channel->resync = false;
    if (rule->history == 0)
        return;
    struct cluster_request *request =
        cluster_request_new(cluster, CLUSTER_OP_POSITION, NULL, channel->name, NULL, NULL, NULL);
    if (request == NULL)
        return;
    request->want_history = true;
    request->resync = true;
    request->history_ttl = rule->history_ttl;
    cluster_send_position(cluster, request);
}

static void cluster_subscribed(struct cluster *cluster, const char *name, bool subscribed)
{
    struct cluster_channel *channel = cluster_channel_find(cluster, name);
    if (channel == NULL)
        return;
    channel->state = subscribed ? CLUSTER_SUBSCRIBED : CLUSTER_IDLE;
    if (subscribed && channel->resync)
        cluster_send_resync(cluster, channel);
    if (subscribed) {
        struct cluster_request *waiting = channel->waiting;
        channel->waiting = NULL;
        while (waiting != NULL) {
            struct cluster_request *next = waiting->next;
            cluster_send_position(cluster, waiting);
            waiting = next;
        }
    }
    cluster_reconcile(cluster, channel);
}

static void cluster_subscribe_cb(redisAsyncContext *context, void *data, void *arg)
{
    struct cluster *cluster = arg;
    redisReply *reply = data;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = reply->element[0]->str;
    const char *channel = cluster_channel_of(cluster, reply->element[1]->str);
    if (channel == NULL)
        return;
    if (strcmp(kind, "message") == 0 && reply->element[2]->type == REDIS_REPLY_STRING) {
        cluster_count(&cluster->messages_received);
        cluster_deliver_message(cluster, channel, reply->element[2]);
    } else if (strcmp(kind, "subscribe") == 0) {
        cluster_subscribed(cluster, channel, true);
    } else if (strcmp(kind, "unsubscribe") == 0) {
        cluster_subscribed(cluster, channel, false);
    }
}

/* ------------------------------------------------------------ presence heartbeat */

struct cluster_names {
    char **names;
    size_t count;
    size_t capacity;
};

static void cluster_names_add(struct cluster_names *list, const char *name)
{
    if (list->count == list->capacity) {
        size_t capacity = list->capacity ? list->capacity * 2 : 16;
        char **grown = realloc(list->names, capacity * sizeof(*grown));
        if (grown == NULL)
            return;
        list->names = grown;
        list->capacity = capacity;
    }
    char *copy = strdup(name);
    if (copy != NULL)
        list->names[list->count++] = copy;
}

static void cluster_names_free(struct cluster_names *list)
{
    for (size_t i = 0; i < list->count; i++)
        free(list->names[i]);
    free(list->names);
    memset(list, 0, sizeof(*list));
}

static void cluster_collect_presence_channel(const struct hub_channel_info *info, void *arg)
{
    if (info->presence && info->subscribers > 0)
        cluster_names_add(arg, info->name);
}

static void cluster_collect_user(const char *user, void *arg)
{
    cluster_names_add(arg, user);
}

/* Refreshes this node's members of one channel and reaps expired ones. */
static void cluster_refresh_channel(struct cluster *cluster, const char *channel)
{
    struct cluster_names users = { 0 };
    hub_each_user(cluster->server->hub, channel, cluster_collect_user, &users);
    size_t argc = 7 + users.count;
    const char **argv = calloc(argc, sizeof(*argv));
    size_t *lengths = calloc(argc, sizeof(*lengths));
    char **members = calloc(users.count + 1, sizeof(*members));
    char *keys[2] = { cluster_key(cluster, "presence:", channel), cluster_key(cluster, "ch:", channel) };
    char node[17], ttl[16];
    snprintf(node, sizeof(node), "%" PRIx64, cluster->node);
    snprintf(ttl, sizeof(ttl), "%d", CLUSTER_PRESENCE_TTL_MS);
    bool ready = argv != NULL && lengths != NULL && members != NULL && keys[0] != NULL &&
                 keys[1] != NULL;
    if (ready) {
        argv[0] = "EVALSHA";
        argv[1] = cluster->sha[CLUSTER_SCRIPT_PRESENCE_REFRESH];
        argv[2] = "2";
        argv[3] = keys[0];
        argv[4] = keys[1];
        argv[5] = node;
        argv[6] = ttl;
        for (size_t i = 0; i < users.count; i++) {
            members[i] = cluster_member(cluster, users.names[i]);
            ready = ready && members[i] != NULL;
            argv[7 + i] = members[i];
        }
    }
    for (size_t i = 0; ready && i < argc; i++)
        lengths[i] = strlen(argv[i]);
    if (ready)
        cluster_command(cluster, cluster_ignore_cb, "presence heartbeat", (int)argc, argv, lengths);
    for (size_t i = 0; members != NULL && i < users.count; i++)
        free(members[i]);
    free(members);
    free(argv);
    free(lengths);
    free(keys[0]);
    free(keys[1]);
    cluster_names_free(&users);
}

static void cluster_heartbeat(struct cluster *cluster)
{
    struct cluster_names channels = { 0 };
    hub_each_channel(cluster->server->hub, cluster_collect_presence_channel, &channels);
    for (size_t i = 0; i < channels.count; i++)
        cluster_refresh_channel(cluster, channels.names[i]);
    cluster_names_free(&channels);
}

/* ------------------------------------------------------------ connection */

static void cluster_connect(struct cluster *cluster);

static void cluster_schedule_retry(struct cluster *cluster)
{
    if (cluster->closing)
        return;
    unsigned jitter = 0;
    seeded_hash_random(&jitter, sizeof(jitter));
    unsigned delay = cluster->backoff_ms + jitter % (cluster->backoff_ms / 4 + 1);
    struct timeval timeout = { delay / 1000, (delay % 1000) * 1000 };
    evtimer_add(cluster->retry, &timeout);
    cluster->backoff_ms = cluster->backoff_ms * 2 > CLUSTER_BACKOFF_MAX_MS
                              ? CLUSTER_BACKOFF_MAX_MS
                              : cluster->backoff_ms * 2;
}

/* Channels go back to unsubscribed; position reads waiting for a
 * subscription fail (their subscribers are answered from what this node
 * knows). */
static void cluster_reset_channels(struct cluster *cluster)
{
    for (size_t b = 0; b < CLUSTER_BUCKETS; b++) {
        struct cluster_channel *channel = cluster->buckets[b];
        while (channel != NULL) {
            struct cluster_channel *next = channel->next;
            struct cluster_request *waiting = channel->waiting;
            channel->waiting = NULL;
            channel->state = CLUSTER_IDLE;
            channel->resync = channel->wanted;
            while (waiting != NULL) {
                struct cluster_request *after = waiting->next;
                cluster_fail(cluster, waiting, "Redis is unavailable");
                waiting = after;
            }
            cluster_channel_drop_if_idle(cluster, channel);
            channel = next;
        }
    }
}

/* Either connection failed or was lost: drop both, fail what waits, and
 * try again after the backoff. Re-entered by the disconnect callbacks of
 * the connections it frees. */
static void cluster_lost(struct cluster *cluster, const char *why)
{
    redisAsyncContext *command = cluster->command;
    redisAsyncContext *subscriber = cluster->subscriber;
    cluster->command = cluster->subscriber = NULL;
    bool was_up = cluster_is_up(cluster);
    __atomic_store_n(&cluster->up, false, __ATOMIC_RELEASE);
    if (command != NULL)
        redisAsyncFree(command);
    if (subscriber != NULL)
        redisAsyncFree(subscriber);
    if (command == NULL && subscriber == NULL && !was_up && evtimer_pending(cluster->retry, NULL))
        return;   /* already handled */
    cluster->in_flight = 0;
    cluster->command_connected = cluster->subscriber_connected = false;
    if (was_up || !cluster->warned_down) {
        log_warn(cluster_log(cluster), "cluster: Redis at %s:%u %s: %s; publishes answer "
                 "unavailable until it is back", cluster->settings->redis.host,
                 cluster->settings->redis.port, was_up ? "lost" : "unreachable", why);
        cluster->warned_down = true;
    }
    cluster_reset_channels(cluster);
    cluster_schedule_retry(cluster);
}

static void cluster_now_up(struct cluster *cluster)
{
    __atomic_store_n(&cluster->up, true, __ATOMIC_RELEASE);
    if (cluster->ever_up)
        cluster_count(&cluster->reconnects);
    log_info(cluster_log(cluster), "cluster: connected to Redis at %s:%u as node %016" PRIx64,
               cluster->settings->redis.host, cluster->settings->redis.port, cluster->node);
    cluster->ever_up = true;
    cluster->warned_down = false;
    cluster->backoff_ms = CLUSTER_BACKOFF_MIN_MS;
    cluster->last_heartbeat = 0;
    for (size_t b = 0; b < CLUSTER_BUCKETS; b++) {
        for (struct cluster_channel *c = cluster->buckets[b], *next; c != NULL; c = next) {
            next = c->next;
            cluster_reconcile(cluster, c);
        }
    }
    event_active(cluster->wake, EV_READ, 0);
}

static void cluster_connect_cb(const redisAsyncContext *context, int status)
{
    struct cluster *cluster = context->data;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback. */
        if (context == cluster->command)
            cluster->command = NULL;
        if (context == cluster->subscriber)
            cluster->subscriber = NULL;
        cluster_lost(cluster, context->errstr[0] != '\0' ? context->errstr : "cannot connect");
        return;
    }
    if (context == cluster->command)
        cluster->command_connected = true;
    if (context == cluster->subscriber)
        cluster->subscriber_connected = true;
    if (cluster->command_connected && cluster->subscriber_connected)
        cluster_now_up(cluster);
}

static void cluster_disconnect_cb(const redisAsyncContext *context, int status)
{
    struct cluster *cluster = context->data;
    bool ours = context == cluster->command || context == cluster->subscriber;
    if (context == cluster->command)
        cluster->command = NULL;
    if (context == cluster->subscriber)
        cluster->subscriber = NULL;
    if (ours && !cluster->closing)
        cluster_lost(cluster, status == REDIS_OK ? "connection closed"
                                                 : (context->errstr[0] != '\0' ? context->errstr
                                                                               : "connection lost"));
}

/* AUTH and SELECT go first on a connection; hiredis sends them once it
 * is connected, ahead of anything queued after them. */
static void cluster_hello(struct cluster *cluster, redisAsyncContext *context, bool select)
{
    const struct cluster_url *url = &cluster->settings->redis;
    char name[32];
    snprintf(name, sizeof(name), "wsbroker-%016" PRIx64, cluster->node);
    if (url->password != NULL) {
        const char *argv[3] = { "AUTH", url->user != NULL ? url->user : url->password,
                                url->password };
        size_t lengths[3] = { 4, strlen(argv[1]), strlen(url->password) };
        redisAsyncCommandArgv(context, cluster_ignore_cb, "AUTH", url->user != NULL ? 3 : 2, argv,
                              lengths);
        cluster->in_flight++;
    }
    /* CLIENT LIST then tells which node a connection belongs to. */
    const char *setname[3] = { "CLIENT", "SETNAME", name };
    size_t setname_lengths[3] = { 6, 7, strlen(name) };
    redisAsyncCommandArgv(context, cluster_ignore_cb, "CLIENT SETNAME", 3, setname,
                          setname_lengths);
    cluster->in_flight++;
    if (select && url->db != 0) {
        char db[16];
        snprintf(db, sizeof(db), "%u", url->db);
        const char *argv[2] = { "SELECT", db };
        size_t lengths[2] = { 6, strlen(db) };
        redisAsyncCommandArgv(context, cluster_ignore_cb, "SELECT", 2, argv, lengths);
        cluster->in_flight++;
    }
}

static void cluster_load_scripts(struct cluster *cluster)
{
    for (int i = 0; i < CLUSTER_SCRIPTS; i++) {
        const char *argv[3] = { "SCRIPT", "LOAD", cluster_script_text[i] };
        size_t lengths[3] = { 6, 4, strlen(cluster_script_text[i]) };
        cluster_command(cluster, cluster_ignore_cb, "SCRIPT LOAD", 3, argv, lengths);
    }
}

static redisAsyncContext *cluster_open(struct cluster *cluster)
{
    const struct cluster_url *url = &cluster->settings->redis;
    redisAsyncContext *context = redisAsyncConnect(url->host, (int)url->port);
    if (context == NULL)
        return NULL;
    if (context->err != 0) {
        log_debug(cluster_log(cluster), "cluster: %s", context->errstr);
        redisAsyncFree(context);
        return NULL;
    }
    context->data = cluster;
    redisLibeventAttach(context, cluster->base);
    redisAsyncSetConnectCallback(context, cluster_connect_cb);
    redisAsyncSetDisconnectCallback(context, cluster_disconnect_cb);
    return context;
}

static void cluster_connect(struct cluster *cluster)
{
    cluster->command_connected = cluster->subscriber_connected = false;
    cluster->in_flight = 0;
    cluster->connect_started = server_now();
    cluster->command = cluster_open(cluster);
    cluster->subscriber = cluster->command != NULL ? cluster_open(cluster) : NULL;
    if (cluster->subscriber == NULL) {
        cluster_lost(cluster, "cannot create a connection");
        return;
    }
    cluster_hello(cluster, cluster->command, true);
    cluster_hello(cluster, cluster->subscriber, false);
    cluster_load_scripts(cluster);
}

static void cluster_retry_cb(evutil_socket_t fd, short events, void *arg)
{
    struct cluster *cluster = arg;
    if (cluster->command == NULL && cluster->subscriber == NULL)
        cluster_connect(cluster);
}

/* Timeouts hiredis does not have, and presence heartbeats. */
static void cluster_tick_cb(evutil_socket_t fd, short events, void *arg)
{
    struct cluster *cluster = arg;
    int64_t now = server_now();
    bool connecting = cluster->command != NULL && !cluster_is_up(cluster);
    if (connecting && now - cluster->connect_started > CLUSTER_CONNECT_TIMEOUT_MS) {
        cluster_lost(cluster, "connect timed out");
        return;
    }
    if (cluster_is_up(cluster) && cluster->in_flight > 0 &&
        now - cluster->last_progress > CLUSTER_COMMAND_TIMEOUT_MS) {
        cluster_lost(cluster, "Redis stopped answering");
        return;
    }
    if (cluster_is_up(cluster) && now - cluster->last_heartbeat >= CLUSTER_PRESENCE_TTL_MS / 3) {
        cluster->last_heartbeat = now;
        cluster_heartbeat(cluster);
    }
}

/* ------------------------------------------------------------ lifecycle */

static void cluster_hash_scripts(struct cluster *cluster)
{
    for (int i = 0; i < CLUSTER_SCRIPTS; i++) {
        unsigned char digest[SHA_DIGEST_LENGTH];
        SHA1((const unsigned char *)cluster_script_text[i], strlen(cluster_script_text[i]), digest);
        for (int k = 0; k < SHA_DIGEST_LENGTH; k++)
            snprintf(&cluster->sha[i][k * 2], 3, "%02x", digest[k]);
    }
}

struct cluster *cluster_new(struct server *server)
{
    struct cluster *cluster = calloc(1, sizeof(*cluster));
    if (cluster == NULL)
        return NULL;
    if (pthread_mutex_init(&cluster->lock, NULL) != 0) {
        free(cluster);
        return NULL;
    }
    cluster->server = server;
    cluster->base = server->base;
    cluster->config = config_retain(server->config);
    cluster->settings = &cluster->config->cluster;
    seeded_hash_random(&cluster->node, sizeof(cluster->node));
    seeded_hash_random(&cluster->seed, sizeof(cluster->seed));
    cluster->node |= 1;   /* never 0 */
    cluster->backoff_ms = CLUSTER_BACKOFF_MIN_MS;
    cluster_hash_scripts(cluster);
    cluster->wake = event_new(cluster->base, -1, 0, cluster_wake_cb, cluster);
    cluster->retry = evtimer_new(cluster->base, cluster_retry_cb, cluster);
    cluster->tick = event_new(cluster->base, -1, EV_PERSIST, cluster_tick_cb, cluster);
    struct timeval tick = { 0, CLUSTER_TICK_MS * 1000 };
    struct timeval now = { 0, 0 };
    if (cluster->wake == NULL || cluster->retry == NULL || cluster->tick == NULL ||
        event_add(cluster->tick, &tick) != 0 || evtimer_add(cluster->retry, &now) != 0) {
        cluster_free(cluster);
        return NULL;
    }
    server->hub = hub_new_cluster(server_worker_count(server->config), worker_post_delivery, server,
                                  cluster_hub_event, cluster);
    if (server->hub == NULL) {
        cluster_free(cluster);
        return NULL;
    }
    return cluster;
}

void cluster_free(struct cluster *cluster)
{
    if (cluster == NULL)
        return;
    cluster->closing = true;
    if (cluster->command != NULL)
        redisAsyncFree(cluster->command);
    if (cluster->subscriber != NULL)
        redisAsyncFree(cluster->subscriber);
    cluster->command = cluster->subscriber = NULL;
    cluster_reset_channels(cluster);
    struct cluster_request *request = cluster_take_queue(cluster);
    while (request != NULL) {
        struct cluster_request *next = request->next;
        if (request->done != NULL)
            cluster_fail(cluster, request, "shutting down");
        else
            cluster_request_free(request);
        request = next;
    }
    for (size_t b = 0; b < CLUSTER_BUCKETS; b++) {
        while (cluster->buckets[b] != NULL) {
            struct cluster_channel *next = cluster->buckets[b]->next;
            free(cluster->buckets[b]);
            cluster->buckets[b] = next;
        }
    }
    if (cluster->wake != NULL)
        event_free(cluster->wake);
    if (cluster->retry != NULL)
        event_free(cluster->retry);
    if (cluster->tick != NULL)
        event_free(cluster->tick);
    config_release(cluster->config);
    pthread_mutex_destroy(&cluster->lock);
    free(cluster);
}

void cluster_get_stats(const struct cluster *cluster, struct cluster_stats *stats)
{
    stats->up = cluster_is_up(cluster);
    stats->reconnects = __atomic_load_n(&cluster->reconnects, __ATOMIC_RELAXED);
    stats->publish_failures = __atomic_load_n(&cluster->publish_failures, __ATOMIC_RELAXED);
    stats->publish_queue_full = __atomic_load_n(&cluster->publish_queue_full, __ATOMIC_RELAXED);
    stats->messages_received = __atomic_load_n(&cluster->messages_received, __ATOMIC_RELAXED);
    stats->dropped_unsubscribed = __atomic_load_n(&cluster->dropped_unsubscribed, __ATOMIC_RELAXED);
    stats->dropped_malformed = __atomic_load_n(&cluster->dropped_malformed, __ATOMIC_RELAXED);
}
