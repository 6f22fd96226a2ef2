#include "pubsub.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cluster.h"
#include "envelope.h"
#include "hub.h"
#include "message.h"
#include "server.h"
#include "worker.h"
#include "wsframe.h"

/* Cluster mode: what arrives while a subscribe waits for its channel's
 * position in Redis is held back, at most this many messages; past it the
 * subscriber sees a gap in seq, as a slow reader would. */
#define PUBSUB_HELD_MAX 4096

struct pubsub_subscription {
    struct hub_subscriber subscriber;    /* first: the hub hands it back */
    struct pubsub_session *session;
    struct pubsub_subscription *next;
    uint64_t serial;                     /* this subscription, not a later one */
    unsigned awaiting;                   /* cluster positions asked, not answered */
    struct message **held;               /* arrived meanwhile, in order */
    size_t held_count;
    struct shared_frame **held_events;   /* presence events meanwhile */
    size_t held_event_count;
    char channel[];
};

struct pubsub_session {
    struct pubsub_host host;
    struct pubsub_subscription *subscriptions;
    size_t subscription_count;
    struct cluster_waiter *waiter;       /* cluster mode: answers find the session */
    uint64_t serials;                    /* subscriptions made so far */
};

/* ------------------------------------------------------------ sending */

static void pubsub_send_text(struct pubsub_session *session, char *text, size_t length)
{
    struct shared_frame *frame = text != NULL ? shared_frame_encode(WS_OP_TEXT, text, length)
                                              : NULL;
    free(text);
    if (frame == NULL)
        return;   /* out of memory: the reply is lost, the connection goes on */
    session->host.send(session->host.owner, frame);
    shared_frame_release(frame);
}

static void pubsub_send_error(struct pubsub_session *session, json_t *id, const char *code,
                              const char *message)
{
    size_t length;
    char *text = envelope_error_reply(id, code, message, &length);
    pubsub_send_text(session, text, length);
}

/* extra is consumed. */
static void pubsub_send_ok(struct pubsub_session *session, json_t *id, json_t *extra)
{
    size_t length;
    char *text = envelope_ok(id, extra, &length);
    json_decref(extra);
    pubsub_send_text(session, text, length);
}

/* A raw message from a broadcast route grows when it becomes an event:
 * JSON spells a control character in six bytes, base64 adds a third. An
 * event over max_message_size is not delivered (the member sees a gap in
 * seq), like one refused with too_large at a pubsub publish: queueing a
 * frame up to six times the limit would let one sender push every pubsub
 * member of a channel over outbound_queue_max and cut them all off. */
/* Whether message's event (its envelope frame's payload) is within
 * max_message_size; its length goes to *length. False also when the event
 * cannot be built. */
static bool pubsub_event_within_limit(const struct pubsub_session *session,
                                      struct message *message, size_t *length)
{
    struct shared_frame *frame = message_envelope_frame(message);
    if (frame == NULL)
        return false;
    *length = frame->length - shared_frame_payload_offset(frame);
    return *length <= session->host.config->websocket.max_message_size;
}

static bool pubsub_event_deliverable(const struct pubsub_session *session,
                                     struct message *message)
{
    size_t length = 0;
    if (pubsub_event_within_limit(session, message, &length))
        return true;
    if (length == 0)
        return false;   /* out of memory building it */
    log_debug(&session->host.worker->server->log,
              "not delivering message %llu of %s to %s: its event is %zu bytes, over "
              "max_message_size", (unsigned long long)message->seq, message->channel,
              session->host.user != NULL ? session->host.user : "-", length);
    return false;
}

static void pubsub_hold(struct pubsub_subscription *subscription, struct message *message)
{
    size_t count = subscription->held_count;
    if (count == PUBSUB_HELD_MAX)
        return;
    if ((count & (count - 1)) == 0) {   /* 0, 1, 2, 4...: grow at powers of two */
        struct message **grown =
            realloc(subscription->held, (count ? count * 2 : 1) * sizeof(*grown));
        if (grown == NULL)
            return;
        subscription->held = grown;
    }
    subscription->held[subscription->held_count++] = message_retain(message);
}

static void pubsub_hold_event(struct pubsub_subscription *subscription,
                              struct shared_frame *frame)
{
    size_t count = subscription->held_event_count;
    if (count == PUBSUB_HELD_MAX)
        return;
    if ((count & (count - 1)) == 0) {
        struct shared_frame **grown =
            realloc(subscription->held_events, (count ? count * 2 : 1) * sizeof(*grown));
        if (grown == NULL)
            return;
        subscription->held_events = grown;
    }
    subscription->held_events[subscription->held_event_count++] = shared_frame_retain(frame);
}

/* Sends the presence events held back (send NULL: drops them). */
static void pubsub_release_events(struct pubsub_subscription *subscription, bool send)
{
    struct pubsub_host *host = &subscription->session->host;
    for (size_t i = 0; i < subscription->held_event_count; i++) {
        if (send)
            host->send(host->owner, subscription->held_events[i]);
        shared_frame_release(subscription->held_events[i]);
    }
    free(subscription->held_events);
    subscription->held_events = NULL;
    subscription->held_event_count = 0;
}

static void pubsub_drop_held(struct pubsub_subscription *subscription)
{
    pubsub_release_events(subscription, false);
    for (size_t i = 0; i < subscription->held_count; i++)
        message_release(subscription->held[i]);
    free(subscription->held);
    subscription->held = NULL;
    subscription->held_count = 0;
}

static void pubsub_deliver(struct hub_subscriber *subscriber, struct message *message)
{
    struct pubsub_subscription *subscription = (struct pubsub_subscription *)subscriber;
    struct pubsub_session *session = subscription->session;
    if (subscription->awaiting > 0) {
        pubsub_hold(subscription, message);
        return;
    }
    if (pubsub_event_deliverable(session, message))
        session->host.send_message(session->host.owner, message);
}

static void pubsub_deliver_event(struct hub_subscriber *subscriber, struct shared_frame *frame)
{
    struct pubsub_subscription *subscription = (struct pubsub_subscription *)subscriber;
    if (subscription->awaiting > 0) {   /* after the subscribe's ok */
        pubsub_hold_event(subscription, frame);
        return;
    }
    subscription->session->host.send(subscription->session->host.owner, frame);
}

/* ------------------------------------------------------------ session */

struct pubsub_session *pubsub_session_new(const struct pubsub_host *host)
{
    struct pubsub_session *session = calloc(1, sizeof(*session));
    if (session == NULL)
        return NULL;
    session->host = *host;
    if (host->worker->server->cluster != NULL &&
        (session->waiter = cluster_waiter_new(session)) == NULL) {
        free(session);
        return NULL;
    }
    return session;
}

static struct hub *pubsub_hub(const struct pubsub_session *session)
{
    return session->host.worker->server->hub;
}

/* What one subscription allocates, for the memory figures in /metrics. */
static size_t pubsub_subscription_bytes(const struct pubsub_subscription *subscription)
{
    return sizeof(*subscription) + strlen(subscription->channel) + 1;
}

static void pubsub_subscription_free(struct pubsub_session *session,
                                     struct pubsub_subscription *subscription)
{
    session->subscription_count--;
    session->host.worker->stats.subscription_bytes -= pubsub_subscription_bytes(subscription);
    hub_unsubscribe(pubsub_hub(session), &subscription->subscriber);
    pubsub_drop_held(subscription);
    free(subscription);
}

void pubsub_session_free(struct pubsub_session *session)
{
    if (session == NULL)
        return;
    while (session->subscriptions != NULL) {
        struct pubsub_subscription *subscription = session->subscriptions;
        session->subscriptions = subscription->next;
        pubsub_subscription_free(session, subscription);
    }
    cluster_waiter_orphan(session->waiter);
    free(session);
}

static struct pubsub_subscription *pubsub_find(const struct pubsub_session *session,
                                               const char *channel)
{
    for (struct pubsub_subscription *s = session->subscriptions; s != NULL; s = s->next) {
        if (strcmp(s->channel, channel) == 0)
            return s;
    }
    return NULL;
}

static bool pubsub_token_allows(const struct pubsub_session *session, const char *channel)
{
    return session->host.identity == NULL ||
           auth_identity_allows(session->host.identity, channel);
}

bool pubsub_publish_allowed(const struct channel_rule *rule, const struct auth_identity *identity,
                            bool member)
{
    switch (rule->publish) {
    case PUBLISH_MEMBERS:
        return member;
    case PUBLISH_ANYONE:
        return true;
    case PUBLISH_TOKEN:
        return identity != NULL;
    case PUBLISH_API_ONLY:
        return false;
    }
    return false;
}

/* ------------------------------------------------------------ ops */

/* Past limits.max_memory new subscriptions and publishes are refused with
 * unavailable, the one error a client is told to retry. Returns true when
 * refused. */
static bool pubsub_refuse_over_memory(struct pubsub_session *session, const struct envelope_request *r)
{
    if (!server_over_memory(session->host.worker->server, session->host.config))
        return false;
    session->host.worker->stats.memory_refusals++;
    pubsub_send_error(session, r->id, ENVELOPE_UNAVAILABLE, "memory limit reached");
    return true;
}

/* ------------------------------------------------------------ cluster mode */

/* A cluster subscribe waiting for its channel's position in Redis. */
struct pubsub_pending_subscribe {
    json_t *id;
    uint64_t serial;                     /* the subscription that asked */
    bool has_since;
    uint64_t since;
    char *epoch;                         /* the client's, or NULL */
    bool joined;
    char channel[];
};

static void pubsub_pending_free(struct pubsub_pending_subscribe *pending)
{
    json_decref(pending->id);
    free(pending->epoch);
    free(pending);
}

/* Delivers what the subscriber missed and what arrived meanwhile, each
 * message once, in seq order, and takes it out of waiting. */
static void pubsub_catch_up(struct pubsub_subscription *subscription,
                            const struct cluster_reply *reply, uint64_t after)
{
    uint64_t high = after;
    for (size_t i = 0; i < reply->held_count; i++) {
        if (reply->held[i]->seq > high && subscription->awaiting == 0) {
            high = reply->held[i]->seq;
            pubsub_deliver(&subscription->subscriber, reply->held[i]);
        }
    }
    size_t count = subscription->held_count;
    struct message **held = subscription->held;
    subscription->held = NULL;
    subscription->held_count = 0;
    for (size_t i = 0; i < count; i++) {
        if (held[i]->seq > high && subscription->awaiting == 0) {
            high = held[i]->seq;
            pubsub_deliver(&subscription->subscriber, held[i]);
        }
        message_release(held[i]);
    }
    free(held);
    hub_subscriber_advance(&subscription->subscriber, high);
}

static void pubsub_cluster_subscribed(struct worker *worker, void *owner, void *tag,
                                      const struct cluster_reply *reply)
{
    struct pubsub_pending_subscribe *pending = tag;
    struct pubsub_session *session = owner;
    if (session == NULL) {
        pubsub_pending_free(pending);
        return;
    }
    /* Unsubscribed meanwhile (perhaps subscribed again, a new
     * subscription): the request is still answered, nothing else. */
    struct pubsub_subscription *subscription = pubsub_find(session, pending->channel);
    if (subscription != NULL && subscription->serial != pending->serial)
        subscription = NULL;
    struct cluster_resume plan = { .recovered = false, .replay_after = 0 };
    json_int_t seq = (json_int_t)reply->seq;
    const char *epoch = reply->epoch;
    struct hub_position local;
    if (reply->ok) {
        uint64_t oldest = reply->held_count > 0 ? reply->held[0]->seq : 0;
        cluster_resume_plan(pending->has_since, pending->since, pending->epoch, reply->seq,
                            reply->epoch, oldest, &plan);
    } else if (subscription != NULL) {   /* Redis went away: what this node knows */
        hub_position(pubsub_hub(session), &subscription->subscriber, false, 0, NULL,
                     server_now(), &local);
        seq = (json_int_t)local.seq;
        epoch = local.epoch;
    }
    json_t *extra = json_pack("{s:s, s:I, s:s}", "channel", pending->channel, "seq", seq,
                              "epoch", epoch);
    if (extra != NULL && pending->has_since)
        json_object_set_new(extra, "recovered", json_boolean(plan.recovered));
    pubsub_send_ok(session, pending->id, extra);
    if (subscription != NULL && --subscription->awaiting == 0) {
        pubsub_catch_up(subscription, reply, pending->has_since || !reply->ok ? plan.replay_after
                                                                                : reply->seq);
        pubsub_release_events(subscription, true);
    }
    if (subscription != NULL && pending->joined)
        hub_announce_join(pubsub_hub(session), &subscription->subscriber);
    pubsub_pending_free(pending);
}

/* Cluster mode: the reply waits for the channel's numbering in Redis.
 * Returns false when Redis is down: the subscriber is then answered from
 * what this node knows (recovered false with since) and gets messages
 * once Redis is back. */
static bool pubsub_cluster_subscribe(struct pubsub_session *session,
                                     const struct envelope_request *r,
                                     struct pubsub_subscription *subscription, bool joined)
{
    struct cluster *cluster = session->host.worker->server->cluster;
    if (cluster == NULL)
        return false;
    size_t length = strlen(subscription->channel);
    struct pubsub_pending_subscribe *pending = calloc(1, sizeof(*pending) + length + 1);
    if (pending == NULL)
        return false;
    memcpy(pending->channel, subscription->channel, length + 1);
    pending->id = json_incref(r->id);
    pending->serial = subscription->serial;
    pending->has_since = r->has_since;
    pending->since = r->since;
    pending->joined = joined;
    if (r->epoch != NULL && (pending->epoch = strdup(r->epoch)) == NULL) {
        pubsub_pending_free(pending);
        return false;
    }
    const struct channel_rule *rule = config_channel_rule(session->host.config, pending->channel);
    if (!cluster_position(cluster, session->host.worker, pending->channel, rule, r->has_since,
                          session->waiter, pubsub_cluster_subscribed, pending)) {
        pubsub_pending_free(pending);
        return false;
    }
    subscription->awaiting++;
    return true;
}

static void pubsub_subscribe(struct pubsub_session *session, const struct envelope_request *r)
{
    if (!pubsub_token_allows(session, r->channel)) {
        pubsub_send_error(session, r->id, ENVELOPE_FORBIDDEN, "the token does not allow this channel");
        return;
    }
    struct pubsub_subscription *subscription = pubsub_find(session, r->channel);
    bool existing = subscription != NULL;
    int joined = 0;
    if (!existing) {
        if (session->subscription_count >= session->host.config->limits.max_subscriptions) {
            pubsub_send_error(session, r->id, ENVELOPE_TOO_MANY_SUBSCRIPTIONS,
                              "subscription limit reached");
            return;
        }
        if (pubsub_refuse_over_memory(session, r))
            return;
        size_t length = strlen(r->channel);
        subscription = calloc(1, sizeof(*subscription) + length + 1);
        if (subscription == NULL) {
            pubsub_send_error(session, r->id, ENVELOPE_UNAVAILABLE, "out of memory");
            return;
        }
        memcpy(subscription->channel, r->channel, length + 1);
        subscription->session = session;
        subscription->serial = ++session->serials;
        subscription->subscriber.user = session->host.user;
        subscription->subscriber.worker = session->host.worker->index;
        subscription->subscriber.presence_events = true;
        subscription->subscriber.deliver = pubsub_deliver;
        subscription->subscriber.deliver_event = pubsub_deliver_event;
        joined = hub_subscribe(pubsub_hub(session), subscription->channel,
                               config_channel_rule(session->host.config, subscription->channel),
                               &subscription->subscriber);
        if (joined < 0) {
            free(subscription);
            pubsub_send_error(session, r->id, ENVELOPE_UNAVAILABLE, "out of memory");
            return;
        }
        subscription->next = session->subscriptions;
        session->subscriptions = subscription;
        session->subscription_count++;
        session->host.worker->stats.subscription_bytes += pubsub_subscription_bytes(subscription);
    }
    if (pubsub_cluster_subscribe(session, r, subscription, joined == 1))
        return;
    int64_t now = server_now();
    struct hub_position position;
    hub_position(pubsub_hub(session), &subscription->subscriber, r->has_since, r->since, r->epoch, now, &position);
    if (session->host.worker->server->cluster != NULL)
        position.recovered = false;   /* Redis is down: its history is out of reach */
    json_t *extra = json_pack("{s:s, s:I, s:s}", "channel", subscription->channel, "seq",
                              (json_int_t)position.seq, "epoch", position.epoch);
    if (extra != NULL && r->has_since)
        json_object_set_new(extra, "recovered", json_boolean(position.recovered));
    pubsub_send_ok(session, r->id, extra);
    if (r->has_since)
        hub_replay(pubsub_hub(session), &subscription->subscriber, position.replay_after, now);
    if (joined == 1)
        hub_announce_join(pubsub_hub(session), &subscription->subscriber);
}

static void pubsub_unsubscribe(struct pubsub_session *session, const struct envelope_request *r)
{
    struct pubsub_subscription **link = &session->subscriptions;
    while (*link != NULL && strcmp((*link)->channel, r->channel) != 0)
        link = &(*link)->next;
    if (*link == NULL) {
        pubsub_send_error(session, r->id, ENVELOPE_NOT_SUBSCRIBED, "not subscribed to this channel");
        return;
    }
    struct pubsub_subscription *subscription = *link;
    *link = subscription->next;
    pubsub_subscription_free(session, subscription);
    pubsub_send_ok(session, r->id, NULL);
}

/* Whether the message event fits max_message_size, known exactly before
 * publishing: the hub will give the message the channel's next seq, so the
 * event is built now with it (and then shared by every pubsub receiver). */
static bool pubsub_event_fits(struct pubsub_session *session, struct message *message)
{
    /* In cluster mode Redis numbers it: judged with the longest seq a
     * channel reaches in practice, then dropped (the copy every node
     * delivers is built from what Redis hands back). */
    message->seq = session->host.worker->server->cluster != NULL
                       ? UINT64_C(9999999999999)
                       : hub_next_seq(pubsub_hub(session), message->channel);
    size_t length;
    return pubsub_event_within_limit(session, message, &length);
}

static void pubsub_cluster_published(struct worker *worker, void *owner, void *tag,
                                     const struct cluster_reply *reply)
{
    json_t *id = tag;
    struct pubsub_session *session = owner;
    if (session != NULL && reply->ok)
        pubsub_send_ok(session, id, json_pack("{s:I}", "seq", (json_int_t)reply->seq));
    else if (session != NULL)
        pubsub_send_error(session, id, ENVELOPE_UNAVAILABLE, "cluster unavailable: publish failed");
    json_decref(id);
}

/* Cluster mode: Redis numbers the message and every node (this one too)
 * delivers it when it comes back from there; the ok follows Redis's
 * answer, so it may come after the publisher's own copy. */
static void pubsub_cluster_publish(struct pubsub_session *session, const struct envelope_request *r,
                                   struct message *message, struct pubsub_subscription *own)
{
    const struct channel_rule *rule = config_channel_rule(session->host.config, r->channel);
    uint64_t except = own != NULL && !session->host.echo_self
                          ? hub_subscriber_id(&own->subscriber) : 0;
    json_t *id = json_incref(r->id);
    if (!cluster_publish(session->host.worker->server->cluster, session->host.worker, message, rule,
                         except, session->waiter, pubsub_cluster_published, id)) {
        json_decref(id);
        pubsub_send_error(session, r->id, ENVELOPE_UNAVAILABLE,
                          "cluster unavailable: Redis is down or too many publishes are pending");
        return;
    }
    session->host.worker->stats.messages_published++;
}

static void pubsub_publish(struct pubsub_session *session, const struct envelope_request *r)
{
    const struct channel_rule *rule = config_channel_rule(session->host.config, r->channel);
    struct pubsub_subscription *own = pubsub_find(session, r->channel);
    if (!pubsub_token_allows(session, r->channel) ||
        !pubsub_publish_allowed(rule, session->host.identity, own != NULL)) {
        pubsub_send_error(session, r->id, ENVELOPE_FORBIDDEN, "publishing to this channel is not allowed");
        return;
    }
    if (pubsub_refuse_over_memory(session, r))
        return;
    char *data = json_dumps(r->data, JSON_COMPACT | JSON_ENCODE_ANY);
    struct message *message =
        data != NULL ? message_new(MESSAGE_JSON, r->channel, session->host.user, data, strlen(data))
                     : NULL;
    free(data);
    if (message == NULL) {
        pubsub_send_error(session, r->id, ENVELOPE_UNAVAILABLE, "out of memory");
        return;
    }
    if (!pubsub_event_fits(session, message)) {
        message_release(message);
        pubsub_send_error(session, r->id, ENVELOPE_TOO_LARGE, "message larger than max_message_size");
        return;
    }
    if (session->host.worker->server->cluster != NULL) {
        pubsub_cluster_publish(session, r, message, own);
        message_release(message);
        return;
    }
    /* The ok reply goes out before the publisher's own copy. Delivering
     * directly, the hub skips it and it is delivered after the reply;
     * through the workers, it comes after the reply anyway, in seq order
     * with what others publish. */
    bool direct = hub_is_direct(pubsub_hub(session));
    bool echo = own != NULL && session->host.echo_self;
    bool skip = own != NULL && (direct || !echo);
    long delivered = server_publish(session->host.worker, message,
                                    skip ? &own->subscriber : NULL, NULL);
    if (delivered < 0) {
        message_release(message);
        pubsub_send_error(session, r->id, ENVELOPE_UNAVAILABLE, "out of memory");
        return;
    }
    pubsub_send_ok(session, r->id, json_pack("{s:I}", "seq", (json_int_t)message->seq));
    if (echo && direct)
        pubsub_deliver(&own->subscriber, message);
    message_release(message);
}

struct pubsub_user_list {
    json_t *users;
};

static void pubsub_collect_user(const char *user, void *arg)
{
    struct pubsub_user_list *list = arg;
    json_array_append_new(list->users, json_string(user));
}

static void pubsub_cluster_presence(struct worker *worker, void *owner, void *tag,
                                    const struct cluster_reply *reply)
{
    json_t *id = tag;
    struct pubsub_session *session = owner;
    json_t *users = session != NULL && reply->ok ? json_array() : NULL;
    for (size_t i = 0; users != NULL && i < reply->user_count; i++)
        json_array_append_new(users, json_string(reply->users[i]));
    if (users != NULL)
        pubsub_send_ok(session, id, json_pack("{s:o}", "users", users));
    else if (session != NULL)
        pubsub_send_error(session, id, ENVELOPE_UNAVAILABLE, "cluster unavailable");
    json_decref(id);
}

static void pubsub_presence(struct pubsub_session *session, const struct envelope_request *r)
{
    const struct channel_rule *rule = config_channel_rule(session->host.config, r->channel);
    if (!pubsub_token_allows(session, r->channel) || !rule->presence) {
        pubsub_send_error(session, r->id, ENVELOPE_FORBIDDEN, "presence is not available on this channel");
        return;
    }
    struct pubsub_user_list list = { .users = json_array() };
    if (list.users == NULL) {
        pubsub_send_error(session, r->id, ENVELOPE_UNAVAILABLE, "out of memory");
        return;
    }
    struct cluster *cluster = session->host.worker->server->cluster;
    json_t *id = json_incref(r->id);
    if (cluster != NULL && cluster_presence(cluster, session->host.worker, r->channel,
                                            session->waiter, pubsub_cluster_presence, id)) {
        json_decref(list.users);
        return;
    }
    json_decref(id);
    /* Standalone, or Redis down: the members this node knows. */
    hub_each_user(pubsub_hub(session), r->channel, pubsub_collect_user, &list);
    pubsub_send_ok(session, r->id, json_pack("{s:o}", "users", list.users));
}

void pubsub_handle_text(struct pubsub_session *session, const uint8_t *text, size_t length)
{
    struct envelope_request request;
    struct envelope_error error;
    if (envelope_parse((const char *)text, length, &request, &error) != 0) {
        pubsub_send_error(session, error.id, error.code, error.message);
        envelope_error_clear(&error);
        return;
    }
    switch (request.op) {
    case ENVELOPE_OP_SUBSCRIBE:
        pubsub_subscribe(session, &request);
        break;
    case ENVELOPE_OP_UNSUBSCRIBE:
        pubsub_unsubscribe(session, &request);
        break;
    case ENVELOPE_OP_PUBLISH:
        pubsub_publish(session, &request);
        break;
    case ENVELOPE_OP_PRESENCE:
        pubsub_presence(session, &request);
        break;
    }
    envelope_request_clear(&request);
}

void pubsub_handle_binary(struct pubsub_session *session)
{
    pubsub_send_error(session, NULL, ENVELOPE_BAD_REQUEST, "binary frames are not part of the protocol");
}
