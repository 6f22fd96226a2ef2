#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "conn.h"
#include "wsframe.h"

/* How long accepting pauses when the process is out of descriptors. */
#define SERVER_ACCEPT_PAUSE_SECONDS 1

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
    return (int64_t)now.tv_sec;
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

void server_connection_gone(struct server *server)
{
    if (server->shutting_down && server->connections == NULL)
        event_base_loopbreak(server->base);
}

/* ------------------------------------------------------------ listeners */

static void server_accept_cb(struct evconnlistener *listener, evutil_socket_t fd,
                             struct sockaddr *address, int address_length, void *arg)
{
    (void)listener;
    conn_accept(arg, fd, address, address_length);
}

static void server_set_accepting(struct server *server, bool accepting)
{
    for (size_t i = 0; i < server->listener_count; i++) {
        if (accepting)
            evconnlistener_enable(server->listeners[i]);
        else
            evconnlistener_disable(server->listeners[i]);
    }
}

static void server_accept_resume_cb(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    struct server *server = arg;
    server->accept_paused = false;
    if (!server->shutting_down)
        server_set_accepting(server, true);
}

/* Out of descriptors, accept() fails at once on every loop pass with the
 * connection still pending: pause instead of spinning, and say so once. */
static void server_accept_error_cb(struct evconnlistener *listener, void *arg)
{
    (void)listener;
    struct server *server = arg;
    int error = EVUTIL_SOCKET_ERROR();
    if (error != EMFILE && error != ENFILE && error != ENOBUFS && error != ENOMEM) {
        log_warn(&server->log, "accept: %s", evutil_socket_error_to_string(error));
        return;
    }
    if (server->accept_paused)
        return;
    server->accept_paused = true;
    log_error(&server->log, "accept: %s; pausing new connections for %d s",
              evutil_socket_error_to_string(error), SERVER_ACCEPT_PAUSE_SECONDS);
    server_set_accepting(server, false);
    struct timeval delay = { SERVER_ACCEPT_PAUSE_SECONDS, 0 };
    evtimer_add(server->accept_resume_timer, &delay);
}

static int server_listen_address(const struct listen_config *listen,
                                 struct sockaddr_storage *address, socklen_t *length)
{
    memset(address, 0, sizeof(*address));
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

static int server_open_listener(struct server *server, const struct listen_config *listen)
{
    struct sockaddr_storage address;
    socklen_t length;
    if (server_listen_address(listen, &address, &length) != 0) {
        log_error(&server->log, "listen %s port %u: not a numeric address", listen->address,
                  listen->port);
        return -1;
    }
    /* V6ONLY lets "::" and "0.0.0.0" on one port be two listeners. */
    unsigned flags = LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC;
    if (address.ss_family == AF_INET6)
        flags |= LEV_OPT_BIND_IPV6ONLY;
    struct evconnlistener *listener =
        evconnlistener_new_bind(server->base, server_accept_cb, server, flags, 1024,
                                (struct sockaddr *)&address, (int)length);
    if (listener == NULL) {
        log_error(&server->log, "cannot listen on %s port %u: %s", listen->address,
                  listen->port, evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        return -1;
    }
    evconnlistener_set_error_cb(listener, server_accept_error_cb);
    server->listeners[server->listener_count++] = listener;
    log_info(&server->log, "listening on %s port %u", listen->address, listen->port);
    return 0;
}

static int server_open_listeners(struct server *server)
{
    const struct config *config = server->config;
    server->listeners = calloc(config->listener_count, sizeof(*server->listeners));
    if (server->listeners == NULL)
        return -1;
    for (size_t i = 0; i < config->listener_count; i++) {
        if (server_open_listener(server, &config->listeners[i]) != 0)
            return -1;
    }
    return 0;
}

static void server_close_listeners(struct server *server)
{
    for (size_t i = 0; i < server->listener_count; i++)
        evconnlistener_free(server->listeners[i]);
    server->listener_count = 0;
}

/* ------------------------------------------------------------ signals */

static bool server_listeners_equal(const struct config *a, const struct config *b)
{
    if (a->listener_count != b->listener_count)
        return false;
    for (size_t i = 0; i < a->listener_count; i++) {
        if (a->listeners[i].port != b->listeners[i].port ||
            strcmp(a->listeners[i].address, b->listeners[i].address) != 0)
            return false;
    }
    return true;
}

static void server_reload(struct server *server)
{
    char error[CONFIG_ERROR_SIZE];
    struct config *config = config_load(server->config_path, error, sizeof(error));
    if (config == NULL) {
        log_error(&server->log, "reload failed: %s; keeping the old configuration", error);
        return;
    }
    if (!server_listeners_equal(server->config, config))
        log_warn(&server->log, "reload: listen addresses changed; they apply after a restart");
    config_release(server->config);
    server->config = config;
    server->log.level = config->log_level;
    log_info(&server->log, "configuration reloaded from %s", server->config_path);
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
    log_info(&server->log, "shutting down on signal %d", signal_number);
    server_close_listeners(server);
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

int server_init(struct server *server, struct config *config, const char *config_path)
{
    memset(server, 0, sizeof(*server));
    server->config = config_retain(config);
    server->log.level = config->log_level;
    server->config_path = strdup(config_path);
    server->base = event_base_new();
    server->hub = hub_new();
    if (server->config_path == NULL || server->base == NULL || server->hub == NULL) {
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
    return server_open_listeners(server);
}

int server_run(struct server *server)
{
    log_info(&server->log, "wsbroker %s ready", PACKAGE_VERSION);
    event_base_dispatch(server->base);
    conn_drop_all(server);
    conn_reap(server);
    log_info(&server->log, "stopped");
    return 0;
}

void server_cleanup(struct server *server)
{
    server_close_listeners(server);
    if (server->base != NULL) {
        conn_drop_all(server);
        conn_reap(server);
    }
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
    stats_free(&server->stats);
    if (server->base != NULL)
        event_base_free(server->base);
    config_release(server->config);
    free(server->config_path);
    memset(server, 0, sizeof(*server));
}
