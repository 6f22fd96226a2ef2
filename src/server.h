/* server — the broker process: the configuration and its reloads, the log,
 * the hub, the workers (worker.h: threads with their own event loops,
 * listeners and connections), what limits count across all of them, and
 * signals and shutdown on the main thread. */
#ifndef WSBROKER_SERVER_H
#define WSBROKER_SERVER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "addrcount.h"
#include "config.h"
#include "hub.h"
#include "log.h"
#include "message.h"

struct worker;
struct cluster;

struct server {
    struct event_base *base;        /* the main thread's: signals only */
    struct config *config;          /* current; workers hold their own copy */
    char *config_path;
    struct log log;
    struct hub *hub;
    struct cluster *cluster;        /* cluster mode (the cluster group), else NULL */
    struct worker *workers;
    unsigned worker_count;
    struct event *signal_events[3];
    unsigned connection_count;      /* atomic: every worker's, for max_connections */
    pthread_mutex_t addresses_lock;
    struct addrcount *addresses;    /* connections per client address */
    uint64_t memory_in_use;         /* atomic: heap bytes, as last measured */
    int64_t memory_measured_at;     /* atomic: server_now() of that measure; 0 = never */
    bool shutting_down;             /* atomic: read by /healthz on any worker */
    unsigned accept_starved_workers; /* atomic: workers pausing accept for lack of fds */
};

/* Sets up the server for config (which it retains): the hub, signal
 * handlers, the workers and their listeners (binding as today, before the
 * privilege drop). Returns 0, or -1 after logging why (a listen failure
 * names the address and port). */
int server_init(struct server *server, struct config *config, const char *config_path);

/* Starts the worker threads and runs the main loop (signals) until
 * shutdown, then waits for the workers. Returns 0, or 1 when a worker
 * could not be started. */
int server_run(struct server *server);

/* Frees everything server_init set up. */
void server_cleanup(struct server *server);

/* How many workers config asks for: workers, or the online CPUs for 0. */
unsigned server_worker_count(const struct config *config);

/* Milliseconds on the monotonic clock: the time base of channel history. */
int64_t server_now(void);

/* Publishes message on its channel under worker's current channel rules,
 * counting it in worker's stats; except (may be NULL) is not delivered to;
 * the channel's epoch is copied to epoch when not NULL (HUB_EPOCH_SIZE
 * bytes). Returns the number of deliveries (made or handed to workers) or
 * -1 when out of memory. */
long server_publish(struct worker *worker, struct message *message,
                    const struct hub_subscriber *except, char *epoch);

/* True when config's limits.max_memory is set and the heap in use
 * (measured at most a few milliseconds ago) has reached it: new
 * connections, subscriptions and publishes are then refused. */
bool server_over_memory(struct server *server, const struct config *config);

/* addrcount_admit and addrcount_remove on the table every worker shares. */
bool server_address_admit(struct server *server, const struct addrcount_key *key,
                          unsigned limit, bool *counted);
void server_address_remove(struct server *server, const struct addrcount_key *key);
size_t server_address_count(struct server *server);

/* Whether SIGTERM has been received (any thread). */
bool server_is_shutting_down(const struct server *server);

#endif
