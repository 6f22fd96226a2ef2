/* worker — one thread with its own event loop: its listeners (TCP ones
 * share their port with every other worker through SO_REUSEPORT, so the
 * kernel spreads accepts), the connections they accepted, its counters and
 * an inbox through which other threads hand it work: hub deliveries, a new
 * configuration, shutdown, and calls (functions run on its thread, such as
 * collecting its counters for /metrics).
 *
 * Everything in a struct worker except the inbox belongs to its thread
 * once it runs; other threads reach it only through the inbox. */
#ifndef WSBROKER_WORKER_H
#define WSBROKER_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "config.h"
#include "hub.h"
#include "stats.h"

struct server;
struct conn;
struct tls_context;
struct worker_sniff;
struct worker_entry;
struct conn_flush;
struct conn_reader;
struct conn_timers;
struct deflate_compressors;

/* One bound socket. */
struct worker_listener {
    struct worker *worker;
    struct evconnlistener *listener;
    struct tls_context *tls;        /* NULL: plain; replaced on SIGHUP */
    char *unix_path;                /* removed again at exit; NULL for TCP */
    size_t config_index;            /* its entry in config->listeners */
};

struct worker {
    struct server *server;
    unsigned index;
    struct event_base *base;
    struct config *config;          /* current for this worker; new connections retain it */
    struct worker_listener *listeners;
    size_t listener_count;
    struct conn *connections;       /* every live connection (conn.c links them) */
    struct conn *reap_list;         /* closed connections waiting to be freed */
    struct worker_sniff *sniffs;    /* TLS connections whose first bytes are awaited */
    struct event *reap_event;
    struct event *accept_resume_timer;
    struct event *shutdown_timer;
    struct event *expire_timer;     /* worker 0 only: ages channel history */
    struct event *inbox_event;
    bool accept_paused;
    bool shutting_down;
    struct stats stats;             /* this worker's counters */
    struct deflate_compressors *compressors;   /* this loop's permessage-deflate streams */
    struct conn_flush *flush;       /* connections to write this loop pass (conn.c) */
    struct conn_reader *reader;     /* this loop's read buffer and spare decoder (conn.c) */
    struct conn_timers *timers;     /* this loop's connection deadlines (conn.c) */
    pthread_t thread;
    bool started;
    /* inbox: filled by any thread, drained in order by this one */
    pthread_mutex_t inbox_lock;
    struct worker_entry *inbox;
    size_t inbox_count;
    size_t inbox_capacity;
    struct worker_entry *calls;     /* pending calls, run ahead of the inbox */
    struct worker_entry *taken;     /* this thread's: taken from the inbox, */
    size_t taken_count;             /* being worked through */
    size_t taken_next;
    bool stopped;                   /* under inbox_lock: its loop has ended */
    uint64_t backlog;               /* atomic: weight of the deliveries queued */
};

/* Sets up worker number index of server: its event loop and its inbox.
 * Returns 0 or -1. Listeners are opened separately. */
int worker_init(struct worker *worker, struct server *server, unsigned index);

/* Opens the listener for config->listeners[index] on this worker; reuse_port
 * lets every worker bind the same TCP address. Returns 0 or -1 (logged). */
int worker_open_listener(struct worker *worker, size_t index, bool reuse_port);

/* Starts the worker's thread. Returns 0 or -1. */
int worker_start(struct worker *worker);

/* Waits for the worker's thread to end (after worker_post_shutdown). */
void worker_join(struct worker *worker);

/* Frees what worker_init and the listeners set up, dropping connections
 * still open and work still queued. Not while the thread runs. */
void worker_cleanup(struct worker *worker);

/* hub_post_fn: arg is the struct server. */
bool worker_post_delivery(void *arg, unsigned worker, const struct hub_item *item);

/* Runs task(worker, arg) on the worker's thread, in order with its
 * deliveries; at shutdown, a task never run is called with worker NULL so
 * it can free arg. False when out of memory (nothing queued). */
bool worker_post_task(struct worker *worker, void (*task)(struct worker *worker, void *arg),
                      void *arg);

/* Hands the worker a new configuration (retained), for connections from
 * now on and for its TLS certificates. */
void worker_post_reload(struct worker *worker, struct config *config);

/* Shutdown: the worker stops accepting, closes its connections with 1001
 * and ends its loop once they are gone or shutdown_timeout has passed. */
void worker_post_shutdown(struct worker *worker);

/* Runs call(worker, arg) on the thread of every worker of self's server
 * (self's own part directly) and returns when all are done. While
 * waiting, self runs the calls others ask of it, so two workers calling
 * each other cannot deadlock. A worker whose loop has ended runs it when
 * it stops. call must not block. */
void worker_call_all(struct worker *self, void (*call)(struct worker *worker, void *arg),
                     void *arg);

/* True when some worker has more deliveries queued than it should: then
 * publishers stop reading for a moment (conn.c), the backpressure a single
 * thread gets for free by delivering as it reads. */
bool worker_backlogged(const struct server *server);

/* For conn.c: queue a closed connection to be freed on the next loop pass. */
void worker_schedule_reap(struct worker *worker);

/* For conn.c: called after a connection was freed. */
void worker_connection_gone(struct worker *worker);

#endif
