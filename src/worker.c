#include "worker.h"

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
#include "deflate.h"
#include "proxy.h"
#include "server.h"
#include "tls.h"
#include "wsframe.h"

/* How long accepting pauses when the process is out of descriptors. */
#define WORKER_ACCEPT_PAUSE_SECONDS 1

/* How much one pass of the loop delivers from the inbox at most, in
 * payload bytes per receiver (beyond its first item): then sockets get
 * written before more is queued, much as when deliveries happen as a
 * publisher's frames are read (16 KiB a read). A whole inbox at once would
 * pile every queued message onto each receiver's output and cut off
 * readers that keep up as slow. */
#define WORKER_PASS_BYTES ((size_t)16 * 1024)

/* Deliveries queued for one worker beyond which publishers wait (payload
 * bytes): a worker that falls behind must not let other workers' publishers
 * queue messages for it without bound. */
#define WORKER_BACKLOG_MAX ((uint64_t)4 * 1024 * 1024)

/* How long worker_call_all sleeps between looks at its calls' progress. */
#define WORKER_CALL_POLL_NS 100000L

enum worker_entry_kind {
    WORKER_DELIVERY,
    WORKER_RELOAD,
    WORKER_SHUTDOWN,
    WORKER_CALL,
    WORKER_TASK,
};

/* A call shared by every worker it was posted to. */
struct worker_call {
    void (*call)(struct worker *worker, void *arg);
    void *arg;
    unsigned remaining;             /* atomic: workers yet to run it */
};

struct worker_entry {
    enum worker_entry_kind kind;
    struct hub_item item;           /* WORKER_DELIVERY */
    struct config *config;          /* WORKER_RELOAD, retained */
    struct worker_call *call;       /* WORKER_CALL */
    void (*task)(struct worker *worker, void *arg);   /* WORKER_TASK */
    void *task_arg;
    struct worker_entry *next;      /* the calls list */
};

/* ------------------------------------------------------------ events */

static void worker_reap_cb(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    conn_reap(arg);
}

void worker_schedule_reap(struct worker *worker)
{
    event_active(worker->reap_event, EV_TIMEOUT, 0);
}

void worker_connection_gone(struct worker *worker)
{
    if (worker->shutting_down && worker->connections == NULL)
        event_base_loopbreak(worker->base);
}

static void worker_expire_cb(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    struct worker *worker = arg;
    hub_expire(worker->server->hub, server_now());
}

/* ------------------------------------------------------------ listeners */

/* A TLS listener first looks at the client's first bytes: a plain HTTP
 * request gets a readable 400 instead of a failed TLS handshake. */
struct worker_sniff {
    struct worker_sniff *previous;  /* worker->sniffs */
    struct worker_sniff *next;
    struct worker *worker;          /* not the listener: it may close meanwhile */
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
static bool worker_sniff_count(struct worker_sniff *sniff)
{
    const struct config *config = sniff->worker->config;
    if (proxy_peer_trusted((struct sockaddr *)&sniff->address, &config->proxy) ||
        !addrcount_key_of((struct sockaddr *)&sniff->address, &sniff->key))
        return true;
    return server_address_admit(sniff->worker->server, &sniff->key,
                                config->limits.max_connections_per_ip, &sniff->counted);
}

/* Unlinks and frees a sniff; its socket is the caller's business. */
static void worker_sniff_free(struct worker_sniff *sniff)
{
    struct worker *worker = sniff->worker;
    if (sniff->previous != NULL)
        sniff->previous->next = sniff->next;
    else
        worker->sniffs = sniff->next;
    if (sniff->next != NULL)
        sniff->next->previous = sniff->previous;
    if (sniff->event != NULL)
        event_free(sniff->event);
    if (sniff->counted)
        server_address_remove(worker->server, &sniff->key);
    tls_context_release(sniff->tls);
    free(sniff);
}

/* Shutdown: a TLS client that has not said anything yet is not waited for. */
static void worker_sniff_close_all(struct worker *worker)
{
    while (worker->sniffs != NULL) {
        evutil_closesocket(event_get_fd(worker->sniffs->event));
        worker_sniff_free(worker->sniffs);
    }
}

static void worker_sniff_cb(evutil_socket_t fd, short events, void *arg)
{
    struct worker_sniff *sniff = arg;
    uint8_t first[8];
    ssize_t length = (events & EV_READ) ? recv(fd, first, sizeof(first), MSG_PEEK) : -1;
    if (length > 0 && tls_looks_like_http(first, (size_t)length)) {
        static const char answer[] =
            "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Length: 33\r\nConnection: close\r\n\r\n"
            "plain HTTP request to a TLS port\n";
        (void)send(fd, answer, sizeof(answer) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
        log_info(&sniff->worker->server->log, "reject plain HTTP on a TLS listener: 400");
        (void)shutdown(fd, SHUT_WR);
        evutil_closesocket(fd);
    } else if (length > 0 && !sniff->worker->shutting_down) {
        /* The connection counts its address itself from here on. */
        if (sniff->counted)
            server_address_remove(sniff->worker->server, &sniff->key);
        sniff->counted = false;
        conn_accept(sniff->worker, fd, (struct sockaddr *)&sniff->address,
                    sniff->address_length, sniff->tls, &sniff->accepted_at);
    } else {
        evutil_closesocket(fd);   /* timed out or closed before saying anything */
    }
    worker_sniff_free(sniff);
}

static void worker_accept_cb(struct evconnlistener *listener, evutil_socket_t fd,
                             struct sockaddr *address, int address_length, void *arg)
{
    (void)listener;
    struct worker_listener *bound = arg;
    struct worker *worker = bound->worker;
    if (bound->tls == NULL) {
        conn_accept(worker, fd, address, address_length, NULL, NULL);
        return;
    }
    struct worker_sniff *sniff = calloc(1, sizeof(*sniff));
    struct timeval timeout = { (time_t)worker->config->websocket.handshake_timeout, 0 };
    if (sniff == NULL || (size_t)address_length > sizeof(sniff->address)) {
        free(sniff);
        evutil_closesocket(fd);
        return;
    }
    sniff->worker = worker;
    sniff->tls = tls_context_retain(bound->tls);
    memcpy(&sniff->address, address, (size_t)address_length);
    sniff->address_length = address_length;
    clock_gettime(CLOCK_MONOTONIC, &sniff->accepted_at);
    sniff->next = worker->sniffs;
    if (worker->sniffs != NULL)
        worker->sniffs->previous = sniff;
    worker->sniffs = sniff;
    /* An event of our own, not event_base_once: shutdown must be able to
     * cancel it and free what it carries. Over the per-address limit, a
     * TLS client cannot be told 503 before its handshake: it is closed at
     * once. */
    if (worker_sniff_count(sniff))
        sniff->event = event_new(worker->base, fd, EV_READ, worker_sniff_cb, sniff);
    if (sniff->event == NULL || event_add(sniff->event, &timeout) != 0) {
        worker_sniff_free(sniff);
        evutil_closesocket(fd);
    }
}

static void worker_set_accepting(struct worker *worker, bool accepting)
{
    for (size_t i = 0; i < worker->listener_count; i++) {
        if (accepting)
            evconnlistener_enable(worker->listeners[i].listener);
        else
            evconnlistener_disable(worker->listeners[i].listener);
    }
}

static bool worker_accept_starved(int error)
{
    return error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM;
}

/* A throwaway socket needs what accept() needs: a free descriptor and a
 * file the kernel can allocate. Any other failure (a sandbox refusing Unix
 * sockets) says nothing about that, and must not keep accepting paused. */
static bool worker_can_open_socket(void)
{
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe < 0)
        return !worker_accept_starved(errno);
    close(probe);
    return true;
}

/* Paused: retries once a descriptor is free, else waits another pause.
 * Accepting again: one whole pause without an accept error ends the episode. */
static void worker_accept_resume_cb(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    struct worker *worker = arg;
    struct timeval delay = { WORKER_ACCEPT_PAUSE_SECONDS, 0 };
    if (worker->shutting_down) {
        worker->accept_paused = false;
    } else if (!worker->accept_paused) {
        /* Logged when the last worker's episode ends. */
        if (__atomic_sub_fetch(&worker->server->accept_starved_workers, 1, __ATOMIC_ACQ_REL) == 0)
            log_warn(&worker->server->log, "accept: accepting new connections again");
    } else if (!worker_can_open_socket()) {
        evtimer_add(worker->accept_resume_timer, &delay);
    } else {
        worker->accept_paused = false;
        worker_set_accepting(worker, true);
        evtimer_add(worker->accept_resume_timer, &delay);
    }
}

/* Out of descriptors, accept() fails at once on every loop pass with the
 * connection still pending: pause instead of spinning. An episode (from
 * the first failure to a pause without one) is logged when it begins and
 * when it ends, not at every retry. */
static void worker_accept_error_cb(struct evconnlistener *listener, void *arg)
{
    (void)listener;
    struct worker *worker = ((struct worker_listener *)arg)->worker;
    int error = EVUTIL_SOCKET_ERROR();
    if (!worker_accept_starved(error)) {
        log_warn(&worker->server->log, "accept: %s", evutil_socket_error_to_string(error));
        return;
    }
    if (worker->accept_paused)
        return;
    /* The timer runs from the first failure until the episode ends. Every
     * worker has its episode; the first one to begin is logged. */
    if (!evtimer_pending(worker->accept_resume_timer, NULL) &&
        __atomic_fetch_add(&worker->server->accept_starved_workers, 1, __ATOMIC_ACQ_REL) == 0)
        log_error(&worker->server->log,
                  "accept: %s; pausing new connections, retrying every %d s",
                  evutil_socket_error_to_string(error), WORKER_ACCEPT_PAUSE_SECONDS);
    worker->accept_paused = true;
    worker_set_accepting(worker, false);
    struct timeval delay = { WORKER_ACCEPT_PAUSE_SECONDS, 0 };
    evtimer_add(worker->accept_resume_timer, &delay);
}

static int worker_listen_address(const struct listen_config *listen,
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

static void worker_describe_listen(const struct listen_config *listen, char *out, size_t size)
{
    if (listen->path != NULL)
        snprintf(out, size, "unix:%s", listen->path);
    else
        snprintf(out, size, "%s port %u%s", listen->address, listen->port,
                 listen->tls != NULL ? " (TLS)" : "");
}

/* A socket file left by a previous run would make bind fail; only a
 * socket is removed, never another kind of file. */
static void worker_remove_stale_socket(const char *path)
{
    struct stat info;
    if (lstat(path, &info) == 0 && S_ISSOCK(info.st_mode))
        unlink(path);
}

static unsigned worker_listen_flags(const struct listen_config *listen, int family,
                                    bool reuse_port)
{
    /* V6ONLY lets "::" and "0.0.0.0" on one port be two listeners. */
    unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC;
    if (listen->path == NULL)
        flags |= LEV_OPT_REUSEABLE;
    if (listen->path == NULL && reuse_port)
        flags |= LEV_OPT_REUSEABLE_PORT;
    if (family == AF_INET6)
        flags |= LEV_OPT_BIND_IPV6ONLY;
    return flags;
}

int worker_open_listener(struct worker *worker, size_t index, bool reuse_port)
{
    struct log *log = &worker->server->log;
    const struct listen_config *listen = &worker->config->listeners[index];
    struct worker_listener *bound = &worker->listeners[worker->listener_count];
    char name[320];
    worker_describe_listen(listen, name, sizeof(name));
    struct sockaddr_storage address;
    socklen_t length;
    if (worker_listen_address(listen, &address, &length) != 0) {
        log_error(log, "listen %s: not a usable address", name);
        return -1;
    }
    bound->worker = worker;
    bound->config_index = index;
    if (listen->tls != NULL) {
        char error[CONFIG_ERROR_SIZE];
        bound->tls = tls_context_new(listen->tls, error, sizeof(error));
        if (bound->tls == NULL) {
            log_error(log, "listen %s: %s", name, error);
            return -1;
        }
    }
    if (listen->path != NULL)
        worker_remove_stale_socket(listen->path);
    bound->listener = evconnlistener_new_bind(
        worker->base, worker_accept_cb, bound,
        worker_listen_flags(listen, address.ss_family, reuse_port), 1024,
        (struct sockaddr *)&address, (int)length);
    if (bound->listener == NULL) {
        log_error(log, "cannot listen on %s: %s", name,
                  evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        tls_context_release(bound->tls);
        bound->tls = NULL;
        return -1;
    }
    worker->listener_count++;
    if (listen->path != NULL) {
        bound->unix_path = strdup(listen->path);
        if (bound->unix_path == NULL || chmod(listen->path, (mode_t)listen->mode) != 0) {
            log_error(log, "cannot set the mode of %s", listen->path);
            return -1;
        }
    }
    evconnlistener_set_error_cb(bound->listener, worker_accept_error_cb);
    if (worker->index == 0)
        log_info(log, "listening on %s", name);
    return 0;
}

static void worker_close_listeners(struct worker *worker)
{
    for (size_t i = 0; i < worker->listener_count; i++) {
        struct worker_listener *bound = &worker->listeners[i];
        evconnlistener_free(bound->listener);
        if (bound->unix_path != NULL)
            unlink(bound->unix_path);
        free(bound->unix_path);
        tls_context_release(bound->tls);
        memset(bound, 0, sizeof(*bound));
    }
    worker->listener_count = 0;
}

/* New certificates for TLS listeners: a listener whose files no longer
 * load keeps its old context. Connections keep the context they started
 * with. Only worker 0 logs, as every worker loads the same files. */
static void worker_reload_certificates(struct worker *worker, const struct config *config)
{
    for (size_t i = 0; i < worker->listener_count; i++) {
        struct worker_listener *bound = &worker->listeners[i];
        if (bound->tls == NULL || bound->config_index >= config->listener_count ||
            config->listeners[bound->config_index].tls == NULL)
            continue;
        char error[CONFIG_ERROR_SIZE];
        struct tls_context *fresh =
            tls_context_new(config->listeners[bound->config_index].tls, error, sizeof(error));
        if (fresh == NULL) {
            if (worker->index == 0)
                log_error(&worker->server->log,
                          "reload: listen[%zu]: %s; keeping the old certificate",
                          bound->config_index, error);
            continue;
        }
        tls_context_release(bound->tls);
        bound->tls = fresh;
    }
}

/* ------------------------------------------------------------ shutdown */

static void worker_shutdown_timeout_cb(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    struct worker *worker = arg;
    if (worker->connections != NULL)
        log_warn(&worker->server->log, "shutdown: dropping the connections still open");
    conn_drop_all(worker);
    conn_reap(worker);
    event_base_loopbreak(worker->base);
}

static void worker_begin_shutdown(struct worker *worker)
{
    if (worker->shutting_down)
        return;
    worker->shutting_down = true;
    worker_close_listeners(worker);
    worker_sniff_close_all(worker);
    if (worker->expire_timer != NULL)
        event_del(worker->expire_timer);
    conn_close_all(worker, WS_CLOSE_GOING_AWAY, "server shutdown");
    struct timeval delay = { (time_t)worker->config->shutdown_timeout, 0 };
    worker->shutdown_timer = evtimer_new(worker->base, worker_shutdown_timeout_cb, worker);
    if (worker->shutdown_timer == NULL || evtimer_add(worker->shutdown_timer, &delay) != 0 ||
        worker->connections == NULL)
        event_base_loopbreak(worker->base);
}

/* ------------------------------------------------------------ inbox */

static void worker_reload(struct worker *worker, struct config *config)
{
    worker_reload_certificates(worker, config);
    config_release(worker->config);
    worker->config = config;
}

/* Runs the calls taken from the list; each is counted done afterwards. */
static void worker_run_calls(struct worker *worker, struct worker_entry *calls)
{
    while (calls != NULL) {
        struct worker_entry *next = calls->next;
        struct worker_call *call = calls->call;
        call->call(worker, call->arg);
        __atomic_sub_fetch(&call->remaining, 1, __ATOMIC_RELEASE);
        free(calls);
        calls = next;
    }
}

static struct worker_entry *worker_take_calls(struct worker *worker)
{
    pthread_mutex_lock(&worker->inbox_lock);
    struct worker_entry *calls = worker->calls;
    worker->calls = NULL;
    pthread_mutex_unlock(&worker->inbox_lock);
    return calls;
}

/* What a delivery counts in a worker's backlog. */
static uint64_t worker_entry_weight(const struct worker_entry *entry)
{
    if (entry->kind != WORKER_DELIVERY)
        return 0;
    return 64 + (entry->item.message != NULL ? entry->item.message->length
                                             : entry->item.frame->length);
}

bool worker_backlogged(const struct server *server)
{
    for (unsigned i = 0; i < server->worker_count; i++) {
        if (__atomic_load_n(&server->workers[i].backlog, __ATOMIC_RELAXED) > WORKER_BACKLOG_MAX)
            return true;
    }
    return false;
}

/* Returns the bytes delivered. */
static size_t worker_handle(struct worker *worker, struct worker_entry *entry)
{
    __atomic_sub_fetch(&worker->backlog, worker_entry_weight(entry), __ATOMIC_RELAXED);
    switch (entry->kind) {
    case WORKER_DELIVERY:
        return hub_deliver_item(worker->server->hub, worker->index, &entry->item);
    case WORKER_RELOAD:
        worker_reload(worker, entry->config);
        break;
    case WORKER_SHUTDOWN:
        worker_begin_shutdown(worker);
        break;
    case WORKER_TASK:
        entry->task(worker, entry->task_arg);
        break;
    case WORKER_CALL:
        break;
    }
    return 0;
}

static bool worker_inbox_waiting(struct worker *worker)
{
    pthread_mutex_lock(&worker->inbox_lock);
    bool waiting = worker->inbox_count > 0 || worker->calls != NULL;
    pthread_mutex_unlock(&worker->inbox_lock);
    return waiting;
}

/* Takes the whole inbox at once when what it took last is done, so
 * producers wait for one swap, not for the deliveries; works through it
 * WORKER_PASS_BYTES at a time, in order. */
static void worker_inbox_cb(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    struct worker *worker = arg;
    pthread_mutex_lock(&worker->inbox_lock);
    if (worker->taken_next == worker->taken_count) {
        free(worker->taken);
        worker->taken = worker->inbox;
        worker->taken_count = worker->inbox_count;
        worker->taken_next = 0;
        worker->inbox = NULL;
        worker->inbox_count = worker->inbox_capacity = 0;
    }
    struct worker_entry *calls = worker->calls;
    worker->calls = NULL;
    pthread_mutex_unlock(&worker->inbox_lock);
    worker_run_calls(worker, calls);
    size_t bytes = 0;
    while (worker->taken_next < worker->taken_count && bytes < WORKER_PASS_BYTES)
        bytes += worker_handle(worker, &worker->taken[worker->taken_next++]);
    if (worker->taken_next < worker->taken_count || worker_inbox_waiting(worker))
        event_active(worker->inbox_event, EV_READ, 0);
}

/* Appends entry; wakes the worker when the inbox was empty (one wakeup per
 * batch). Returns false when out of memory. */
static bool worker_push(struct worker *worker, const struct worker_entry *entry)
{
    pthread_mutex_lock(&worker->inbox_lock);
    bool ok = true;
    if (worker->inbox_count == worker->inbox_capacity) {
        size_t capacity = worker->inbox_capacity ? worker->inbox_capacity * 2 : 64;
        struct worker_entry *grown = realloc(worker->inbox, capacity * sizeof(*grown));
        ok = grown != NULL;
        if (ok) {
            worker->inbox = grown;
            worker->inbox_capacity = capacity;
        }
    }
    bool wake = false;
    if (ok) {
        wake = worker->inbox_count == 0 && worker->calls == NULL;
        worker->inbox[worker->inbox_count++] = *entry;
        __atomic_add_fetch(&worker->backlog, worker_entry_weight(entry), __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&worker->inbox_lock);
    if (wake)
        event_active(worker->inbox_event, EV_READ, 0);
    return ok;
}

bool worker_post_delivery(void *arg, unsigned index, const struct hub_item *item)
{
    struct server *server = arg;
    struct worker_entry entry = { .kind = WORKER_DELIVERY, .item = *item };
    return worker_push(&server->workers[index], &entry);
}

bool worker_post_task(struct worker *worker, void (*task)(struct worker *worker, void *arg),
                      void *arg)
{
    struct worker_entry entry = { .kind = WORKER_TASK, .task = task, .task_arg = arg };
    return worker_push(worker, &entry);
}

void worker_post_reload(struct worker *worker, struct config *config)
{
    struct worker_entry entry = { .kind = WORKER_RELOAD, .config = config_retain(config) };
    if (!worker_push(worker, &entry))
        config_release(config);
}

void worker_post_shutdown(struct worker *worker)
{
    struct worker_entry entry = { .kind = WORKER_SHUTDOWN };
    if (!worker_push(worker, &entry))
        event_base_loopbreak(worker->base);
}

/* Queues call for worker; false when the worker has stopped (it then runs
 * nothing more) or memory is short. */
static bool worker_post_call(struct worker *worker, struct worker_call *call)
{
    struct worker_entry *entry = calloc(1, sizeof(*entry));
    if (entry == NULL)
        return false;
    entry->kind = WORKER_CALL;
    entry->call = call;
    pthread_mutex_lock(&worker->inbox_lock);
    bool posted = !worker->stopped;
    bool wake = posted && worker->inbox_count == 0 && worker->calls == NULL;
    if (posted) {
        entry->next = worker->calls;
        worker->calls = entry;
    }
    pthread_mutex_unlock(&worker->inbox_lock);
    if (!posted)
        free(entry);
    if (wake)
        event_active(worker->inbox_event, EV_READ, 0);
    return posted;
}

void worker_call_all(struct worker *self, void (*call)(struct worker *worker, void *arg),
                     void *arg)
{
    struct server *server = self->server;
    struct worker_call shared = { .call = call, .arg = arg, .remaining = 0 };
    for (unsigned i = 0; i < server->worker_count; i++) {
        struct worker *other = &server->workers[i];
        if (other == self)
            continue;
        __atomic_add_fetch(&shared.remaining, 1, __ATOMIC_RELAXED);
        if (!worker_post_call(other, &shared))
            __atomic_sub_fetch(&shared.remaining, 1, __ATOMIC_RELAXED);
    }
    call(self, arg);
    struct timespec pause = { 0, WORKER_CALL_POLL_NS };
    while (__atomic_load_n(&shared.remaining, __ATOMIC_ACQUIRE) > 0) {
        worker_run_calls(self, worker_take_calls(self));
        nanosleep(&pause, NULL);
    }
}

/* ------------------------------------------------------------ lifecycle */

int worker_init(struct worker *worker, struct server *server, unsigned index)
{
    memset(worker, 0, sizeof(*worker));
    worker->server = server;
    worker->index = index;
    worker->config = config_retain(server->config);
    if (pthread_mutex_init(&worker->inbox_lock, NULL) != 0)
        return -1;
    worker->base = event_base_new();
    worker->listeners = calloc(server->config->listener_count, sizeof(*worker->listeners));
    worker->compressors = deflate_compressors_new();
    if (worker->base == NULL || worker->listeners == NULL || worker->compressors == NULL)
        return -1;
    worker->reap_event = event_new(worker->base, -1, 0, worker_reap_cb, worker);
    worker->accept_resume_timer = evtimer_new(worker->base, worker_accept_resume_cb, worker);
    worker->inbox_event = event_new(worker->base, -1, 0, worker_inbox_cb, worker);
    if (worker->reap_event == NULL || worker->accept_resume_timer == NULL ||
        worker->inbox_event == NULL)
        return -1;
    if (index == 0) {
        struct timeval second = { 1, 0 };
        worker->expire_timer = event_new(worker->base, -1, EV_PERSIST, worker_expire_cb, worker);
        if (worker->expire_timer == NULL || event_add(worker->expire_timer, &second) != 0)
            return -1;
    }
    return 0;
}

/* The calls posted before the worker stopped still run (on this thread,
 * now idle), so nobody waits for them forever. */
static void worker_stop(struct worker *worker)
{
    pthread_mutex_lock(&worker->inbox_lock);
    worker->stopped = true;
    struct worker_entry *calls = worker->calls;
    worker->calls = NULL;
    pthread_mutex_unlock(&worker->inbox_lock);
    worker_run_calls(worker, calls);
}

static void *worker_main(void *arg)
{
    struct worker *worker = arg;
    /* The inbox event is not pending, so the loop must not end when
     * nothing else is. */
    event_base_loop(worker->base, EVLOOP_NO_EXIT_ON_EMPTY);
    conn_drop_all(worker);
    conn_reap(worker);
    worker_stop(worker);
    return NULL;
}

/* The thread starts with the signals the main loop handles blocked, so
 * they always reach the main thread. */
int worker_start(struct worker *worker)
{
    sigset_t blocked;
    sigset_t previous;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGTERM);
    sigaddset(&blocked, SIGINT);
    sigaddset(&blocked, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &blocked, &previous);
    int failed = pthread_create(&worker->thread, NULL, worker_main, worker);
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    if (failed != 0)
        return -1;
    worker->started = true;
    return 0;
}

void worker_join(struct worker *worker)
{
    if (worker->started)
        pthread_join(worker->thread, NULL);
    worker->started = false;
}

static void worker_free_event(struct event **event)
{
    if (*event != NULL)
        event_free(*event);
    *event = NULL;
}

static void worker_discard(struct worker *worker, struct worker_entry *entries, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (entries[i].kind == WORKER_DELIVERY)
            hub_discard_item(worker->server->hub, &entries[i].item);
        else if (entries[i].kind == WORKER_RELOAD)
            config_release(entries[i].config);
        else if (entries[i].kind == WORKER_TASK)
            entries[i].task(NULL, entries[i].task_arg);
    }
}

void worker_cleanup(struct worker *worker)
{
    if (worker->server == NULL)
        return;
    worker_close_listeners(worker);
    worker_sniff_close_all(worker);
    if (worker->base != NULL) {
        conn_drop_all(worker);
        conn_reap(worker);
    }
    conn_flush_free(worker);
    worker_stop(worker);
    /* Deliveries still queued go nowhere; they only hold references. */
    worker_discard(worker, worker->taken + worker->taken_next,
                   worker->taken_count - worker->taken_next);
    worker_discard(worker, worker->inbox, worker->inbox_count);
    free(worker->taken);
    free(worker->inbox);
    free(worker->listeners);
    worker_free_event(&worker->shutdown_timer);
    worker_free_event(&worker->accept_resume_timer);
    worker_free_event(&worker->expire_timer);
    worker_free_event(&worker->reap_event);
    worker_free_event(&worker->inbox_event);
    stats_free(&worker->stats);
    deflate_compressors_free(worker->compressors);
    if (worker->base != NULL)
        event_base_free(worker->base);
    config_release(worker->config);
    pthread_mutex_destroy(&worker->inbox_lock);
    memset(worker, 0, sizeof(*worker));
}
