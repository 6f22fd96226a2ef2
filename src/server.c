#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"
#include "memory.h"
#include "notify.h"
#include "privileges.h"
#include "proxy.h"
#include "tls.h"
#include "wsframe.h"

/* How long accepting pauses when the process is out of descriptors. */
#define SERVER_ACCEPT_PAUSE_SECONDS 1

/* How old the heap figure behind max_memory may be. Reading it walks the
 * allocator's free lists, too slow for every message; a burst of work in
 * one interval can overshoot the limit by what that burst allocates. */
#define SERVER_MEMORY_REFRESH_MS 10

static void server_reap_cb(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    conn_reap(arg);
}

void server_schedule_reap(struct server *server)
{
    event_active(server->reap_event, EV_TIMEOUT, 0);
}

int64_t server_now(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

long server_publish(struct server *server, struct message *message,
                    const struct hub_subscriber *except, char *epoch)
{
    const struct channel_rule *rule = config_channel_rule(server->config, message->channel);
    long deliveries = hub_publish(server->hub, message, rule, except, server_now(), epoch);
    if (deliveries >= 0)
        server->stats.messages_published++;
    return deliveries;
}

static void server_expire_cb(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    struct server *server = arg;
    hub_expire(server->hub, server_now());
}

bool server_over_memory(struct server *server)
{
    uint64_t limit = server->config->limits.max_memory;
    if (limit == 0)
        return false;
    int64_t now = server_now();
    if (server->memory_measured_at == 0 ||
        now - server->memory_measured_at >= SERVER_MEMORY_REFRESH_MS) {
        server->memory_in_use = memory_heap_in_use();
        server->memory_measured_at = now;
    }
    return server->memory_in_use >= limit;
}

void server_connection_gone(struct server *server)
{
    if (server->shutting_down && server->connections == NULL)
        event_base_loopbreak(server->base);
}

/* ------------------------------------------------------------ listeners */

/* A TLS listener first looks at the client's first bytes: a plain HTTP
 * request gets a readable 400 instead of a failed TLS handshake. */
struct server_sniff {
    struct server_sniff *previous;  /* server->sniffs */
    struct server_sniff *next;
    struct server *server;          /* not the listener: it may close meanwhile */
    struct tls_context *tls;
    struct event *event;            /* first bytes or handshake_timeout */
    struct sockaddr_storage address;
    int address_length;
    struct timespec accepted_at;    /* handshake_timeout counts from here */
    struct addrcount_key key;       /* held in server->addresses while sniffing */
    bool counted;
};

/* A client still being looked at holds its place under
 * max_connections_per_ip, so silent TLS connections cannot pile up from
 * one address. Returns false when the address is over the limit. */
static bool server_sniff_count(struct server_sniff *sniff)
{
    struct server *server = sniff->server;
    if (proxy_peer_trusted((struct sockaddr *)&sniff->address, &server->config->proxy) ||
        !addrcount_key_of((struct sockaddr *)&sniff->address, &sniff->key))
        return true;
    return addrcount_admit(server->addresses, &sniff->key,
                           server->config->limits.max_connections_per_ip, &sniff->counted);
}

/* Unlinks and frees a sniff; its socket is the caller's business. */
static void server_sniff_free(struct server_sniff *sniff)
{
    struct server *server = sniff->server;
    if (sniff->previous != NULL)
        sniff->previous->next = sniff->next;
    else
        server->sniffs = sniff->next;
    if (sniff->next != NULL)
        sniff->next->previous = sniff->previous;
    if (sniff->event != NULL)
        event_free(sniff->event);
    if (sniff->counted)
        addrcount_remove(server->addresses, &sniff->key);
    tls_context_release(sniff->tls);
    free(sniff);
}

/* Shutdown: a TLS client that has not said anything yet is not waited for. */
static void server_sniff_close_all(struct server *server)
{
    while (server->sniffs != NULL) {
        evutil_closesocket(event_get_fd(server->sniffs->event));
        server_sniff_free(server->sniffs);
    }
}

static void server_sniff_cb(evutil_socket_t fd, short events, void *arg)
{
    struct server_sniff *sniff = arg;
    uint8_t first[8];
    ssize_t length = (events & EV_READ) ? recv(fd, first, sizeof(first), MSG_PEEK) : -1;
    if (length > 0 && tls_looks_like_http(first, (size_t)length)) {
        static const char answer[] =
            "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Length: 33\r\nConnection: close\r\n\r\n"
            "plain HTTP request to a TLS port\n";
        (void)send(fd, answer, sizeof(answer) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
        log_info(&sniff->server->log, "reject plain HTTP on a TLS listener: 400");
        (void)shutdown(fd, SHUT_WR);
        evutil_closesocket(fd);
    } else if (length > 0 && !sniff->server->shutting_down) {
        /* The connection counts its address itself from here on. */
        if (sniff->counted)
            addrcount_remove(sniff->server->addresses, &sniff->key);
        sniff->counted = false;
        conn_accept(sniff->server, fd, (struct sockaddr *)&sniff->address,
                    sniff->address_length, sniff->tls, &sniff->accepted_at);
    } else {
        evutil_closesocket(fd);   /* timed out or closed before saying anything */
    }
    server_sniff_free(sniff);
}

static void server_accept_cb(struct evconnlistener *listener, evutil_socket_t fd,
                             struct sockaddr *address, int address_length, void *arg)
{
    (void)listener;
    struct server_listener *bound = arg;
    if (bound->tls == NULL) {
        conn_accept(bound->server, fd, address, address_length, NULL, NULL);
        return;
    }
    struct server_sniff *sniff = calloc(1, sizeof(*sniff));
    struct timeval timeout = { (time_t)bound->server->config->websocket.handshake_timeout, 0 };
    if (sniff == NULL || (size_t)address_length > sizeof(sniff->address)) {
        free(sniff);
        evutil_closesocket(fd);
        return;
    }
    struct server *server = bound->server;
    sniff->server = server;
    sniff->tls = tls_context_retain(bound->tls);
    memcpy(&sniff->address, address, (size_t)address_length);
    sniff->address_length = address_length;
    clock_gettime(CLOCK_MONOTONIC, &sniff->accepted_at);
    sniff->next = server->sniffs;
    if (server->sniffs != NULL)
        server->sniffs->previous = sniff;
    server->sniffs = sniff;
    /* An event of our own, not event_base_once: shutdown must be able to
     * cancel it and free what it carries. Over the per-address limit, a
     * TLS client cannot be told 503 before its handshake: it is closed at
     * once. */
    if (server_sniff_count(sniff))
        sniff->event = event_new(server->base, fd, EV_READ, server_sniff_cb, sniff);
    if (sniff->event == NULL || event_add(sniff->event, &timeout) != 0) {
        server_sniff_free(sniff);
        evutil_closesocket(fd);
    }
}

static void server_set_accepting(struct server *server, bool accepting)
{
    for (size_t i = 0; i < server->listener_count; i++) {
        if (accepting)
            evconnlistener_enable(server->listeners[i].listener);
        else
            evconnlistener_disable(server->listeners[i].listener);
    }
}

static bool server_accept_starved(int error)
{
    return error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM;
}

/* A throwaway socket needs what accept() needs: a free descriptor and a
 * file the kernel can allocate. Any other failure (a sandbox refusing Unix
 * sockets) says nothing about that, and must not keep accepting paused. */
static bool server_can_open_socket(void)
{
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe < 0)
        return !server_accept_starved(errno);
    close(probe);
    return true;
}

/* Paused: retries once a descriptor is free, else waits another pause.
 * Accepting again: one whole pause without an accept error ends the episode. */
static void server_accept_resume_cb(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    struct server *server = arg;
    struct timeval delay = { SERVER_ACCEPT_PAUSE_SECONDS, 0 };
    if (server->shutting_down) {
        server->accept_paused = false;
    } else if (!server->accept_paused) {
        log_warn(&server->log, "accept: accepting new connections again");
    } else if (!server_can_open_socket()) {
        evtimer_add(server->accept_resume_timer, &delay);
    } else {
        server->accept_paused = false;
        server_set_accepting(server, true);
        evtimer_add(server->accept_resume_timer, &delay);
    }
}

/* Out of descriptors, accept() fails at once on every loop pass with the
 * connection still pending: pause instead of spinning. An episode (from
 * the first failure to a pause without one) is logged when it begins and
 * when it ends, not at every retry. */
static void server_accept_error_cb(struct evconnlistener *listener, void *arg)
{
    (void)listener;
    struct server *server = ((struct server_listener *)arg)->server;
    int error = EVUTIL_SOCKET_ERROR();
    if (!server_accept_starved(error)) {
        log_warn(&server->log, "accept: %s", evutil_socket_error_to_string(error));
        return;
    }
    if (server->accept_paused)
        return;
    /* The timer runs from the first failure until the episode ends. */
    if (!evtimer_pending(server->accept_resume_timer, NULL))
        log_error(&server->log, "accept: %s; pausing new connections, retrying every %d s",
                  evutil_socket_error_to_string(error), SERVER_ACCEPT_PAUSE_SECONDS);
    server->accept_paused = true;
    server_set_accepting(server, false);
    struct timeval delay = { SERVER_ACCEPT_PAUSE_SECONDS, 0 };
    evtimer_add(server->accept_resume_timer, &delay);
}

static int server_listen_address(const struct listen_config *listen,
                                 struct sockaddr_storage *address, socklen_t *length)
{
    memset(address, 0, sizeof(*address));
    if (listen->path != NULL) {
        struct sockaddr_un *un = (struct sockaddr_un *)address;
        if (strlen(listen->path) >= sizeof(un->sun_path))
            return -1;
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, listen->path);
        *length = sizeof(*un);
        return 0;
    }
    struct sockaddr_in *in = (struct sockaddr_in *)address;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)address;
    if (inet_pton(AF_INET, listen->address, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)listen->port);
        *length = sizeof(*in);
        return 0;
    }
    if (inet_pton(AF_INET6, listen->address, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)listen->port);
        *length = sizeof(*in6);
        return 0;
    }
    return -1;
}

static void server_describe_listen(const struct listen_config *listen, char *out, size_t size)
{
    if (listen->path != NULL)
        snprintf(out, size, "unix:%s", listen->path);
    else
        snprintf(out, size, "%s port %u%s", listen->address, listen->port,
                 listen->tls != NULL ? " (TLS)" : "");
}

/* A socket file left by a previous run would make bind fail; only a
 * socket is removed, never another kind of file. */
static void server_remove_stale_socket(const char *path)
{
    struct stat info;
    if (lstat(path, &info) == 0 && S_ISSOCK(info.st_mode))
        unlink(path);
}

static int server_open_listener(struct server *server, size_t index)
{
    const struct listen_config *listen = &server->config->listeners[index];
    struct server_listener *bound = &server->listeners[server->listener_count];
    char name[320];
    server_describe_listen(listen, name, sizeof(name));
    struct sockaddr_storage address;
    socklen_t length;
    if (server_listen_address(listen, &address, &length) != 0) {
        log_error(&server->log, "listen %s: not a usable address", name);
        return -1;
    }
    bound->server = server;
    bound->config_index = index;
    if (listen->tls != NULL) {
        char error[CONFIG_ERROR_SIZE];
        bound->tls = tls_context_new(listen->tls, error, sizeof(error));
        if (bound->tls == NULL) {
            log_error(&server->log, "listen %s: %s", name, error);
            return -1;
        }
    }
    if (listen->path != NULL)
        server_remove_stale_socket(listen->path);
    /* V6ONLY lets "::" and "0.0.0.0" on one port be two listeners. */
    unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC;
    if (listen->path == NULL)
        flags |= LEV_OPT_REUSEABLE;
    if (address.ss_family == AF_INET6)
        flags |= LEV_OPT_BIND_IPV6ONLY;
    bound->listener = evconnlistener_new_bind(server->base, server_accept_cb, bound, flags, 1024,
                                              (struct sockaddr *)&address, (int)length);
    if (bound->listener == NULL) {
        log_error(&server->log, "cannot listen on %s: %s", name,
                  evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        tls_context_release(bound->tls);
        bound->tls = NULL;
        return -1;
    }
    server->listener_count++;
    if (listen->path != NULL) {
        bound->unix_path = strdup(listen->path);
        if (bound->unix_path == NULL || chmod(listen->path, (mode_t)listen->mode) != 0) {
            log_error(&server->log, "cannot set the mode of %s", listen->path);
            return -1;
        }
    }
    evconnlistener_set_error_cb(bound->listener, server_accept_error_cb);
    log_info(&server->log, "listening on %s", name);
    return 0;
}

static int server_open_listeners(struct server *server)
{
    const struct config *config = server->config;
    server->listeners = calloc(config->listener_count, sizeof(*server->listeners));
    if (server->listeners == NULL)
        return -1;
    for (size_t i = 0; i < config->listener_count; i++) {
        if (server_open_listener(server, i) != 0)
            return -1;
    }
    return 0;
}

static void server_close_listeners(struct server *server)
{
    for (size_t i = 0; i < server->listener_count; i++) {
        struct server_listener *bound = &server->listeners[i];
        evconnlistener_free(bound->listener);
        if (bound->unix_path != NULL)
            unlink(bound->unix_path);
        free(bound->unix_path);
        tls_context_release(bound->tls);
        memset(bound, 0, sizeof(*bound));
    }
    server->listener_count = 0;
}

/* New certificates for TLS listeners: a listener whose files no longer
 * load keeps its old context. Connections keep the context they started
 * with. */
static void server_reload_certificates(struct server *server, const struct config *config)
{
    for (size_t i = 0; i < server->listener_count; i++) {
        struct server_listener *bound = &server->listeners[i];
        if (bound->tls == NULL || bound->config_index >= config->listener_count ||
            config->listeners[bound->config_index].tls == NULL)
            continue;
        char error[CONFIG_ERROR_SIZE];
        struct tls_context *fresh =
            tls_context_new(config->listeners[bound->config_index].tls, error, sizeof(error));
        if (fresh == NULL) {
            log_error(&server->log, "reload: listen[%zu]: %s; keeping the old certificate",
                      bound->config_index, error);
            continue;
        }
        tls_context_release(bound->tls);
        bound->tls = fresh;
    }
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
    server_reload_certificates(server, config);
    config_release(server->config);
    server->config = config;
    server->log.level = config->log_level;
    log_info(&server->log, "configuration reloaded from %s", server->config_path);
    (void)notify_send("READY=1\nSTATUS=configuration reloaded");
}

static void server_shutdown_timeout_cb(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    struct server *server = arg;
    log_warn(&server->log, "shutdown: dropping the connections still open");
    conn_drop_all(server);
    conn_reap(server);
    event_base_loopbreak(server->base);
}

static void server_begin_shutdown(struct server *server, int signal_number)
{
    if (server->shutting_down)
        return;
    server->shutting_down = true;
    (void)notify_send("STOPPING=1");
    log_info(&server->log, "shutting down on signal %d", signal_number);
    server_close_listeners(server);
    server_sniff_close_all(server);
    event_del(server->expire_timer);
    conn_close_all(server, WS_CLOSE_GOING_AWAY, "server shutdown");
    struct timeval delay = { (time_t)server->config->shutdown_timeout, 0 };
    server->shutdown_timer = evtimer_new(server->base, server_shutdown_timeout_cb, server);
    if (server->shutdown_timer == NULL || evtimer_add(server->shutdown_timer, &delay) != 0) {
        event_base_loopbreak(server->base);
        return;
    }
    if (server->connections == NULL)
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

int server_init(struct server *server, struct config *config, const char *config_path)
{
    memset(server, 0, sizeof(*server));
    server->config = config_retain(config);
    log_init(&server->log, config->log_level);
    server->config_path = strdup(config_path);
    server->base = event_base_new();
    server->hub = hub_new();
    server->addresses = addrcount_new();
    server->compressors = deflate_compressors_new();
    if (server->config_path == NULL || server->base == NULL || server->hub == NULL ||
        server->addresses == NULL || server->compressors == NULL) {
        log_error(&server->log, "out of memory starting up");
        return -1;
    }
    server->reap_event = event_new(server->base, -1, 0, server_reap_cb, server);
    server->accept_resume_timer = evtimer_new(server->base, server_accept_resume_cb, server);
    server->expire_timer = event_new(server->base, -1, EV_PERSIST, server_expire_cb, server);
    struct timeval second = { 1, 0 };
    if (server->reap_event == NULL || server->accept_resume_timer == NULL ||
        server->expire_timer == NULL || event_add(server->expire_timer, &second) != 0 ||
        server_watch_signals(server) != 0) {
        log_error(&server->log, "cannot set up the event loop");
        return -1;
    }
    if (server_open_listeners(server) != 0)
        return -1;
    return server_settle_process(server);
}

int server_run(struct server *server)
{
    log_info(&server->log, "wsbroker %s ready", PACKAGE_VERSION);
    (void)notify_send("READY=1\nSTATUS=accepting connections");
    event_base_dispatch(server->base);
    conn_drop_all(server);
    conn_reap(server);
    log_info(&server->log, "stopped");
    return 0;
}

void server_cleanup(struct server *server)
{
    server_close_listeners(server);
    server_sniff_close_all(server);
    if (server->base != NULL) {
        conn_drop_all(server);
        conn_reap(server);
    }
    conn_flush_free(server);
    free(server->listeners);
    for (size_t i = 0; i < 3; i++) {
        if (server->signal_events[i] != NULL)
            event_free(server->signal_events[i]);
    }
    if (server->shutdown_timer != NULL)
        event_free(server->shutdown_timer);
    if (server->accept_resume_timer != NULL)
        event_free(server->accept_resume_timer);
    if (server->expire_timer != NULL)
        event_free(server->expire_timer);
    if (server->reap_event != NULL)
        event_free(server->reap_event);
    hub_free(server->hub);
    addrcount_free(server->addresses);
    deflate_compressors_free(server->compressors);
    stats_free(&server->stats);
    if (server->base != NULL)
        event_base_free(server->base);
    config_release(server->config);
    free(server->config_path);
    memset(server, 0, sizeof(*server));
}
