#include "server.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/thread.h>

#include "cluster.h"
#include "conn.h"
#include "memory.h"
#include "notify.h"
#include "privileges.h"
#include "worker.h"

/* How old the heap figure behind max_memory may be. Reading it walks the
 * allocator's free lists, too slow for every message; a burst of work in
 * one interval can overshoot the limit by what that burst allocates. */
#define SERVER_MEMORY_REFRESH_MS 10

int64_t server_now(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

unsigned server_worker_count(const struct config *config)
{
    if (config->workers > 0)
        return config->workers;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (online < 1)
        return 1;
    return online > CONFIG_MAX_WORKERS ? CONFIG_MAX_WORKERS : (unsigned)online;
}

long server_publish(struct worker *worker, struct message *message,
                    const struct hub_subscriber *except, char *epoch)
{
    const struct channel_rule *rule = config_channel_rule(worker->config, message->channel);
    if (worker->server->cluster != NULL) {
        /* Numbered by Redis and delivered when it comes back from there;
         * nobody waits for the answer. */
        if (!cluster_publish(worker->server->cluster, worker, message, rule,
                             except != NULL ? hub_subscriber_id(except) : 0, NULL, NULL, NULL))
            return -1;
        worker->stats.messages_published++;
        return 0;
    }
    long deliveries =
        hub_publish(worker->server->hub, message, rule, except, server_now(), epoch);
    if (deliveries >= 0)
        worker->stats.messages_published++;
    return deliveries;
}

bool server_over_memory(struct server *server, const struct config *config)
{
    uint64_t limit = config->limits.max_memory;
    if (limit == 0)
        return false;
    int64_t now = server_now();
    int64_t measured_at = __atomic_load_n(&server->memory_measured_at, __ATOMIC_ACQUIRE);
    /* One worker measures; the others use the figure it leaves. */
    if ((measured_at == 0 || now - measured_at >= SERVER_MEMORY_REFRESH_MS) &&
        __atomic_compare_exchange_n(&server->memory_measured_at, &measured_at, now, false,
                                    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        __atomic_store_n(&server->memory_in_use, memory_heap_in_use(), __ATOMIC_RELEASE);
    return __atomic_load_n(&server->memory_in_use, __ATOMIC_ACQUIRE) >= limit;
}

bool server_address_admit(struct server *server, const struct addrcount_key *key,
                          unsigned limit, bool *counted)
{
    pthread_mutex_lock(&server->addresses_lock);
    bool admitted = addrcount_admit(server->addresses, key, limit, counted);
    pthread_mutex_unlock(&server->addresses_lock);
    return admitted;
}

void server_address_remove(struct server *server, const struct addrcount_key *key)
{
    pthread_mutex_lock(&server->addresses_lock);
    addrcount_remove(server->addresses, key);
    pthread_mutex_unlock(&server->addresses_lock);
}

size_t server_address_count(struct server *server)
{
    pthread_mutex_lock(&server->addresses_lock);
    size_t count = addrcount_addresses(server->addresses);
    pthread_mutex_unlock(&server->addresses_lock);
    return count;
}

bool server_is_shutting_down(const struct server *server)
{
    return __atomic_load_n(&server->shutting_down, __ATOMIC_ACQUIRE);
}

/* ------------------------------------------------------------ signals */

static bool server_text_equal(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static bool server_listeners_equal(const struct config *a, const struct config *b)
{
    if (a->listener_count != b->listener_count)
        return false;
    for (size_t i = 0; i < a->listener_count; i++) {
        const struct listen_config *x = &a->listeners[i];
        const struct listen_config *y = &b->listeners[i];
        if (x->port != y->port || !server_text_equal(x->address, y->address) ||
            !server_text_equal(x->path, y->path) || (x->tls == NULL) != (y->tls == NULL))
            return false;
    }
    return true;
}

static bool server_cluster_equal(const struct cluster_config *a, const struct cluster_config *b)
{
    return a->enabled == b->enabled && server_text_equal(a->url, b->url) &&
           server_text_equal(a->prefix, b->prefix) && server_text_equal(a->engine, b->engine);
}

static void server_reload(struct server *server)
{
    (void)notify_reloading();
    char error[CONFIG_ERROR_SIZE];
    struct config *config = config_load(server->config_path, error, sizeof(error));
    if (config == NULL) {
        log_error(&server->log, "reload failed: %s; keeping the old configuration", error);
        (void)notify_send("READY=1\nSTATUS=reload failed, old configuration kept");
        return;
    }
    if (!server_listeners_equal(server->config, config))
        log_warn(&server->log, "reload: listen addresses changed; they apply after a restart");
    if (server_worker_count(config) != server->worker_count)
        log_warn(&server->log, "reload: workers changed; it applies after a restart");
    if (!server_cluster_equal(&server->config->cluster, &config->cluster))
        log_warn(&server->log, "reload: cluster changed; it applies after a restart");
    for (unsigned i = 0; i < server->worker_count; i++)
        worker_post_reload(&server->workers[i], config);
    config_release(server->config);
    server->config = config;
    server->log.level = config->log_level;
    log_info(&server->log, "configuration reloaded from %s", server->config_path);
    (void)notify_send("READY=1\nSTATUS=configuration reloaded");
}

/* Every worker closes its own connections; the main loop ends and
 * server_run waits for the workers. */
static void server_begin_shutdown(struct server *server, int signal_number)
{
    if (server_is_shutting_down(server))
        return;
    __atomic_store_n(&server->shutting_down, true, __ATOMIC_RELEASE);
    (void)notify_send("STOPPING=1");
    log_info(&server->log, "shutting down on signal %d", signal_number);
    for (unsigned i = 0; i < server->worker_count; i++)
        worker_post_shutdown(&server->workers[i]);
    event_base_loopbreak(server->base);
}

static void server_signal_cb(evutil_socket_t signal_number, short events, void *arg)
{
    (void)events;
    struct server *server = arg;
    if (signal_number == SIGHUP)
        server_reload(server);
    else
        server_begin_shutdown(server, (int)signal_number);
}

static int server_watch_signals(struct server *server)
{
    static const int signals[3] = { SIGTERM, SIGINT, SIGHUP };
    for (size_t i = 0; i < 3; i++) {
        server->signal_events[i] = evsignal_new(server->base, signals[i], server_signal_cb, server);
        if (server->signal_events[i] == NULL || evsignal_add(server->signal_events[i], NULL) != 0)
            return -1;
    }
    /* A peer that vanishes must not kill the broker mid-write. */
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

/* ------------------------------------------------------------ lifecycle */

/* After binding (which may need root for low ports): enough descriptors for
 * max_connections, then the configured user. */
static int server_settle_process(struct server *server)
{
    const struct config *config = server->config;
    unsigned long wanted = (unsigned long)config->limits.max_connections + 64;
    unsigned long got = 0;
    int raised = privileges_raise_nofile(wanted, &got);
    if (raised != 0)
        log_warn(&server->log, "open files limit is %lu, below the %lu that max_connections needs; "
                 "raise LimitNOFILE or lower limits.max_connections", got, wanted);
    char error[256];
    if (privileges_drop(config->user, error, sizeof(error)) != 0) {
        log_error(&server->log, "cannot run as user %s: %s", config->user, error);
        return -1;
    }
    return 0;
}

/* Every worker binds every TCP listener (SO_REUSEPORT: the kernel spreads
 * new connections over them); a Unix socket is one file, so only worker 0
 * listens on it. */
static int server_open_listeners(struct server *server)
{
    bool reuse_port = server->worker_count > 1;
    for (unsigned w = 0; w < server->worker_count; w++) {
        for (size_t i = 0; i < server->config->listener_count; i++) {
            if (w > 0 && server->config->listeners[i].path != NULL)
                continue;
            if (worker_open_listener(&server->workers[w], i, reuse_port) != 0)
                return -1;
        }
    }
    return 0;
}

static int server_init_workers(struct server *server)
{
    server->worker_count = server_worker_count(server->config);
    server->workers = calloc(server->worker_count, sizeof(*server->workers));
    if (server->workers == NULL)
        return -1;
    if (server->config->cluster.enabled)
        server->cluster = cluster_new(server);   /* makes the cluster hub */
    else
        server->hub = server->worker_count > 1
                          ? hub_new_shared(server->worker_count, worker_post_delivery, server)
                          : hub_new();
    if (server->hub == NULL)
        return -1;
    for (unsigned i = 0; i < server->worker_count; i++) {
        if (worker_init(&server->workers[i], server, i) != 0)
            return -1;
    }
    return 0;
}

int server_init(struct server *server, struct config *config, const char *config_path)
{
    memset(server, 0, sizeof(*server));
    server->config = config_retain(config);
    log_init(&server->log, config->log_level);
    /* Before any event base exists: bases made afterwards are safe to wake
     * (event_active) from other threads. */
    if (evthread_use_pthreads() != 0 || pthread_mutex_init(&server->addresses_lock, NULL) != 0) {
        log_error(&server->log, "cannot set up threads");
        return -1;
    }
    server->config_path = strdup(config_path);
    server->base = event_base_new();
    server->addresses = addrcount_new();
    if (server->config_path == NULL || server->base == NULL || server->addresses == NULL ||
        server_init_workers(server) != 0) {
        log_error(&server->log, "out of memory starting up");
        return -1;
    }
    if (server_watch_signals(server) != 0) {
        log_error(&server->log, "cannot set up the event loop");
        return -1;
    }
    if (server_open_listeners(server) != 0)
        return -1;
    return server_settle_process(server);
}

int server_run(struct server *server)
{
    int status = 0;
    for (unsigned i = 0; i < server->worker_count && status == 0; i++) {
        if (worker_start(&server->workers[i]) != 0) {
            log_error(&server->log, "cannot start worker %u", i);
            status = 1;
        }
    }
    if (status == 0) {
        log_info(&server->log, "wsbroker %s ready, %u worker%s", PACKAGE_VERSION,
                 server->worker_count, server->worker_count == 1 ? "" : "s");
        (void)notify_send("READY=1\nSTATUS=accepting connections");
        event_base_dispatch(server->base);
    } else {
        __atomic_store_n(&server->shutting_down, true, __ATOMIC_RELEASE);
        for (unsigned i = 0; i < server->worker_count; i++)
            worker_post_shutdown(&server->workers[i]);
    }
    for (unsigned i = 0; i < server->worker_count; i++)
        worker_join(&server->workers[i]);
    log_info(&server->log, "stopped");
    return status;
}

void server_cleanup(struct server *server)
{
    /* Connections first (they unsubscribe from the hub), then what is
     * still queued for workers, then the hub. */
    for (unsigned i = 0; server->workers != NULL && i < server->worker_count; i++)
        worker_cleanup(&server->workers[i]);
    free(server->workers);
    for (size_t i = 0; i < 3; i++) {
        if (server->signal_events[i] != NULL)
            event_free(server->signal_events[i]);
    }
    /* Workers are gone: answers still coming from Redis are dropped. */
    cluster_free(server->cluster);
    hub_free(server->hub);
    addrcount_free(server->addresses);
    pthread_mutex_destroy(&server->addresses_lock);
    if (server->base != NULL)
        event_base_free(server->base);
    config_release(server->config);
    free(server->config_path);
    memset(server, 0, sizeof(*server));
}
