/* pubsub — the JSON protocol of pubsub routes for one connection: its
 * subscriptions, and what each request op does. The connection gives it a
 * way to send frames; pubsub gives the connection nothing to parse. */
#ifndef WSBROKER_PUBSUB_H
#define WSBROKER_PUBSUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "config.h"
#include "message.h"
#include "shared_frame.h"

struct worker;
struct pubsub_session;

/* What a session needs from its connection. Pointers must outlive it. */
struct pubsub_host {
    struct worker *worker;                 /* the connection's */
    const struct config *config;           /* the connection's config */
    const char *user;
    const struct auth_identity *identity;  /* NULL without a verified token */
    bool echo_self;
    /* Queues frame to the connection (by reference; retain to keep). */
    void (*send)(void *owner, struct shared_frame *frame);
    /* Queues message's envelope frame, compressed when the connection
     * negotiated it; counts the delivery. */
    void (*send_message)(void *owner, struct message *message);
    void *owner;
};

struct pubsub_session *pubsub_session_new(const struct pubsub_host *host);

/* Unsubscribes everything (presence leaves go out) and frees the session. */
void pubsub_session_free(struct pubsub_session *session);

/* Handles one text message: a request envelope. Replies and events go
 * through host->send. */
void pubsub_handle_text(struct pubsub_session *session, const uint8_t *text, size_t length);

/* Binary frames are not part of the protocol: answers bad_request. */
void pubsub_handle_binary(struct pubsub_session *session);

/* True when a client may publish to a channel under rule: member says
 * whether it is subscribed to it, identity is its verified token or NULL. */
bool pubsub_publish_allowed(const struct channel_rule *rule, const struct auth_identity *identity,
                            bool member);

#endif
