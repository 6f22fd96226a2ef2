#include "pubsub.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "envelope.h"
#include "hub.h"
#include "message.h"
#include "server.h"
#include "worker.h"
#include "wsframe.h"

struct pubsub_subscription {
    struct hub_subscriber subscriber;    /* first: the hub hands it back */
    struct pubsub_session *session;
    struct pubsub_subscription *next;
    char channel[];
};

struct pubsub_session {
    struct pubsub_host host;
    struct pubsub_subscription *subscriptions;
    size_t subscription_count;
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

static void pubsub_deliver(struct hub_subscriber *subscriber, struct message *message)
{
    struct pubsub_subscription *subscription = (struct pubsub_subscription *)subscriber;
    struct pubsub_session *session = subscription->session;
    if (pubsub_event_deliverable(session, message))
        session->host.send_message(session->host.owner, message);
}

static void pubsub_deliver_event(struct hub_subscriber *subscriber, struct shared_frame *frame)
{
    struct pubsub_subscription *subscription = (struct pubsub_subscription *)subscriber;
    subscription->session->host.send(subscription->session->host.owner, frame);
}

/* ------------------------------------------------------------ session */

struct pubsub_session *pubsub_session_new(const struct pubsub_host *host)
{
    struct pubsub_session *session = calloc(1, sizeof(*session));
    if (session != NULL)
        session->host = *host;
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
    int64_t now = server_now();
    struct hub_position position;
    hub_position(pubsub_hub(session), &subscription->subscriber, r->has_since, r->since, r->epoch, now, &position);
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
    message->seq = hub_next_seq(pubsub_hub(session), message->channel);
    size_t length;
    return pubsub_event_within_limit(session, message, &length);
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
