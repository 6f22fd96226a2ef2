/* server — the broker process: listeners, the current configuration, the
 * hub, every live connection, signals and shutdown. All mutable state of the
 * daemon hangs off one struct server. */
#ifndef WSBROKER_SERVER_H
#define WSBROKER_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "addrcount.h"
#include "config.h"
#include "hub.h"
#include "log.h"
#include "message.h"
#include "stats.h"

struct conn;
struct conn_flush;
struct tls_context;
struct server_sniff;

/* One bound socket. */
struct server_listener {
    struct server *server;
    struct evconnlistener *listener;
    struct tls_context *tls;        /* NULL: plain; replaced on SIGHUP */
    char *unix_path;                /* removed again at exit; NULL for TCP */
    size_t config_index;            /* its entry in config->listeners */
};

struct server {
    struct event_base *base;
    struct config *config;          /* current; new connections retain it */
    char *config_path;
    struct log log;
    struct hub *hub;
    struct server_listener *listeners;
    size_t listener_count;
    struct conn *connections;       /* every live connection (conn.c links them) */
    struct conn *reap_list;         /* closed connections waiting to be freed */
    struct server_sniff *sniffs;    /* TLS connections whose first bytes are awaited */
    struct event *reap_event;
    struct event *accept_resume_timer;
    bool accept_paused;
    struct event *signal_events[3];
    struct event *shutdown_timer;
    struct event *expire_timer;     /* ages channel history once a second */
    unsigned connection_count;
    struct addrcount *addresses;    /* connections per client address */
    struct deflate_compressors *compressors;   /* this loop's permessage-deflate streams */
    struct conn_flush *flush;       /* connections to write this loop pass (conn.c) */
    uint64_t memory_in_use;         /* heap bytes, as last measured */
    int64_t memory_measured_at;     /* server_now() of that measure; 0 = never */
    bool shutting_down;
    struct stats stats;
};

/* Sets up the server for config (which it retains): event base, hub, signal
 * handlers and one listener per listen entry. Returns 0, or -1 after
 * logging why (a listen failure names the address and port). */
int server_init(struct server *server, struct config *config, const char *config_path);

/* Runs the event loop until shutdown completes. Returns 0. */
int server_run(struct server *server);

/* Frees everything server_init set up. */
void server_cleanup(struct server *server);

/* Milliseconds on the monotonic clock: the time base of channel history. */
int64_t server_now(void);

/* Publishes message on its channel under the current channel rules,
 * counting it; except (may be NULL) is not delivered to; the channel's epoch
 * is copied to epoch when not NULL (HUB_EPOCH_SIZE bytes). Returns the
 * number of deliveries or -1 when out of memory. */
long server_publish(struct server *server, struct message *message,
                    const struct hub_subscriber *except, char *epoch);

/* True when limits.max_memory is set and the heap in use (measured at
 * most a few milliseconds ago) has reached it: new connections,
 * subscriptions and publishes are then refused. */
bool server_over_memory(struct server *server);

/* For conn.c: queue a closed connection to be freed on the next loop pass. */
void server_schedule_reap(struct server *server);

/* For conn.c: called after a connection was freed. */
void server_connection_gone(struct server *server);

#endif
