#include "conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <openssl/ssl.h>

#include "addrcount.h"
#include "api.h"
#include "auth.h"
#include "cluster.h"
#include "config.h"
#include "deflate.h"
#include "framequeue.h"
#include "handshake.h"
#include "http.h"
#include "hub.h"
#include "log.h"
#include "message.h"
#include "proxy.h"
#include "pubsub.h"
#include "ratelimit.h"
#include "route.h"
#include "server.h"
#include "worker.h"
#include "static_files.h"
#include "timerwheel.h"
#include "tls.h"
#include "utf8.h"
#include "wsframe.h"

enum conn_state {
    CONN_HTTP,        /* reading the request head */
    CONN_OPEN,        /* WebSocket open */
    CONN_CLOSING,     /* we sent a close frame and wait for the peer's */
    CONN_FLUSHING,    /* last bytes queued: write them, then linger */
    CONN_LINGER,      /* our side shut down; discard input until EOF */
    CONN_DEAD,        /* on the reap list */
};

/* Seconds a closed connection waits for the peer's FIN before dropping it:
 * closing with unread input would send RST and could destroy our last
 * response before the client read it. */
#define CONN_LINGER_SECONDS 2

/* Unsent bytes the kernel takes for one connection (plus one write).
 * Linux sizes a socket's send buffer from the peer's MSS: for a loopback
 * peer (64 KiB segments) it starts at tcp_wmem[2], 4 MiB by default, which
 * a peer that stops reading fills before outbound_queue_max sees a byte.
 * With this mark the backlog stays in the queue that outbound_queue_max
 * bounds. Bytes in flight are not limited, so fast peers keep their pace. */
#define CONN_NOTSENT_LOWAT 16384

/* Frames this long or longer are queued by reference (conn_queue_frame). */
#define CONN_REFERENCE_MIN 1024

/* Plain connections write their own frames once the WebSocket is open:
 * deliveries queue frame references (framequeue.h), and the connection is
 * put on its loop's flush list, which one event run once per loop pass
 * empties with one writev per connection. Only a socket that takes no more
 * waits for EV_WRITE. The bufferevent then only reads (and still writes
 * for TLS connections and HTTP answers): its output path cost a chain
 * allocation per write, and two epoll_ctl calls per write to switch its
 * write event on and off. */
struct conn_flush {
    struct event *event;            /* active while list is not empty */
    struct conn *list;
};

/* Plain connections also read for themselves once the WebSocket is open:
 * their bufferevent is freed after the upgrade (its two buffers, two events
 * and bookkeeping cost over 1 KiB per idle connection, and every read an
 * FIONREAD ioctl). One read event per connection, embedded in it, reads
 * into this buffer, shared by every connection of the loop, and the bytes
 * go straight to a decoder. A connection between frames holds no decoder:
 * it borrows the loop's spare one for each read, and keeps one of its own
 * only while a frame or a fragmented message is incomplete. */
#define CONN_READ_SIZE 16384

struct conn_reader {
    struct ws_decoder *spare;       /* an idle decoder, lent for one read */
    uint8_t buffer[CONN_READ_SIZE];
};

/* The deadlines of a loop's connections (handshake_timeout, ping_interval
 * and ping_timeout, close_timeout, lingering) hang on one timer wheel that
 * one loop timer advances every tick while any is pending: an entry costs
 * a connection 24 bytes where a libevent timer cost 128 and an allocation.
 * A deadline fires up to a tick late. */
#define CONN_TIMER_TICK_MS 100

struct conn_timers {
    struct timer_wheel wheel;
    struct event *tick;             /* pending while the wheel is not empty */
};

#define CONN_PEER_SIZE (2 * INET6_ADDRSTRLEN + 24)
#define CONN_TOKEN_MAX 8192
#define CONN_USER_MAX 64

/* An IPv4 or IPv6 socket address (only the family of anything else). */
union conn_address {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
};

/* permessage-deflate, for the connections that negotiated it. */
struct conn_deflate {
    struct deflate_params params;
    struct deflate_inflater *inflater;
};

/* Fields only some connections use live behind pointers (NULL when
 * unused), so that an idle connection stays small; the log name is
 * formatted from the addresses when a line is logged (CONN_PEER). */
struct conn {
    struct conn *previous;           /* worker->connections list */
    struct conn *next;
    struct conn *reap_next;
    struct server *server;
    struct worker *worker;           /* the thread it lives on */
    struct config *config;           /* retained: the config it started under */
    struct bufferevent *bev;         /* NULL once a plain WebSocket reads itself */
    struct timer_wheel_entry timer;  /* on the loop's wheel (conn_timers) */
    struct event read_event;         /* set up once bev is NULL */
    struct event *resume;            /* reading paused while workers catch up */
    struct ws_decoder *decoder;      /* only while a frame is incomplete */
    struct frame_queue out;          /* direct: frames not yet written */
    struct conn *flush_previous;     /* flush list links */
    struct conn *flush_next;
    struct event *write_event;       /* direct: EV_WRITE once a write blocked */
    const struct route_config *route;
    char *path;                      /* request path, for logs */
    char *channel;                   /* broadcast channel */
    struct hub_subscriber subscriber;     /* broadcast subscription */
    struct pubsub_session *pubsub;        /* pubsub routes */
    char *user;                      /* identity: token sub, ?user= or generated */
    struct auth_identity *identity;  /* from a verified token */
    struct conn_deflate *deflate;    /* permessage-deflate negotiated */
    union conn_address *client;      /* believed client (proxy.trusted) when
                                        not the peer itself */
    struct ratelimit rate;           /* messages_per_second */
    struct timespec last_frame_at;   /* keep-alive clock */
    struct timespec next_ping_at;
    union conn_address peer_address; /* the socket's peer */
    evutil_socket_t fd;              /* the socket (bufferevent_getfd locks) */
    int route_stats;                 /* index in worker->stats.routes, or -1 */
    enum conn_state state;
    uint16_t close_code;             /* code sent or echoed, 1006 when none */
    struct addrcount_key address_key;
    bool over_limit;                 /* accepted past max_connections */
    bool upgraded;                   /* was a WebSocket (for the close log) */
    bool tls;                        /* the bufferevent speaks TLS */
    bool counted;                    /* counts against max_connections */
    bool address_counted;            /* counted in server->addresses */
    bool over_address_limit;         /* over max_connections_per_ip */
    bool direct;                     /* writes out itself (plain, upgraded) */
    bool flush_listed;               /* on the server's flush list */
    struct cluster_waiter *api_waiter;   /* cluster mode: an API answer awaited */
};

#define CONN_FROM_SUBSCRIBER(s) \
    ((struct conn *)((char *)(s) - offsetof(struct conn, subscriber)))

static void conn_read_cb(struct bufferevent *bev, void *arg);
static void conn_readable_cb(evutil_socket_t fd, short events, void *arg);
static void conn_pause_if_backlogged(struct conn *conn);
static void conn_write_cb(struct bufferevent *bev, void *arg);
static void conn_event_cb(struct bufferevent *bev, short events, void *arg);
static void conn_timer_fire(struct conn *conn);
static void conn_linger(struct conn *conn);
static void conn_flush_unlist(struct conn *conn);
static size_t conn_queued(const struct conn *conn);
static void conn_deliver(struct hub_subscriber *subscriber, struct message *message);
static void conn_deliver_event(struct hub_subscriber *subscriber, struct shared_frame *frame);
static void conn_drop(struct conn *conn);
static void conn_refuse_address(struct conn *conn, const struct http_request *request);
static void conn_count_address(struct conn *conn, const struct sockaddr *address);
static const struct sockaddr *conn_client_address(const struct conn *conn);

/* ---------------------------------------------------------------- time */

static struct timespec conn_now(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now;
}

static struct timespec conn_time_add(struct timespec t, unsigned seconds)
{
    t.tv_sec += (time_t)seconds;
    return t;
}

static bool conn_time_reached(struct timespec now, struct timespec deadline)
{
    return now.tv_sec > deadline.tv_sec ||
           (now.tv_sec == deadline.tv_sec && now.tv_nsec >= deadline.tv_nsec);
}

/* Milliseconds of CLOCK_MONOTONIC, rounded up: a deadline rounded down
 * could fire before conn_time_reached agrees that it has come. */
static int64_t conn_milliseconds(struct timespec t, bool round_up)
{
    int64_t ms = (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
    return round_up && t.tv_nsec % 1000000 != 0 ? ms + 1 : ms;
}

#define CONN_FROM_TIMER(entry) \
    ((struct conn *)((char *)(entry) - offsetof(struct conn, timer)))

static void conn_timers_cb(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    struct conn_timers *timers = arg;
    timer_wheel_advance(&timers->wheel, conn_milliseconds(conn_now(), false));
    struct timer_wheel_entry *entry;
    while ((entry = timer_wheel_pop(&timers->wheel)) != NULL)
        conn_timer_fire(CONN_FROM_TIMER(entry));
    if (timer_wheel_count(&timers->wheel) == 0)
        event_del(timers->tick);
}

static struct conn_timers *conn_timers_get(struct worker *worker)
{
    if (worker->timers != NULL)
        return worker->timers;
    struct conn_timers *timers = calloc(1, sizeof(*timers));
    if (timers == NULL)
        return NULL;
    timers->tick = event_new(worker->base, -1, EV_PERSIST, conn_timers_cb, timers);
    if (timers->tick == NULL) {
        free(timers);
        return NULL;
    }
    timer_wheel_init(&timers->wheel, CONN_TIMER_TICK_MS, conn_milliseconds(conn_now(), false));
    worker->timers = timers;
    return timers;
}

static void conn_timers_free(struct worker *worker)
{
    if (worker->timers == NULL)
        return;
    event_free(worker->timers->tick);
    free(worker->timers);
    worker->timers = NULL;
}

/* conn_accept made the worker's timers before any connection arms one. */
static void conn_arm_timer_at(struct conn *conn, struct timespec deadline)
{
    struct conn_timers *timers = conn->worker->timers;
    timer_wheel_schedule(&timers->wheel, &conn->timer, conn_milliseconds(deadline, true));
    if (!event_pending(timers->tick, EV_TIMEOUT, NULL)) {
        struct timeval tick = { .tv_sec = 0, .tv_usec = CONN_TIMER_TICK_MS * 1000 };
        event_add(timers->tick, &tick);
    }
}

static void conn_arm_timer_seconds(struct conn *conn, unsigned seconds)
{
    conn_arm_timer_at(conn, conn_time_add(conn_now(), seconds));
}

static void conn_disarm_timer(struct conn *conn)
{
    if (timer_wheel_pending(&conn->timer))
        timer_wheel_cancel(&conn->worker->timers->wheel, &conn->timer);
}

/* ------------------------------------------------------------ lifecycle */

static void conn_format_peer(const struct sockaddr *address, char *out, size_t size)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (address->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)address;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        snprintf(out, size, "%s:%u", host, (unsigned)ntohs(in->sin_port));
    } else if (address->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)address;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        snprintf(out, size, "[%s]:%u", host, (unsigned)ntohs(in6->sin6_port));
    } else {
        snprintf(out, size, "unix");
    }
}

/* The connection's name in logs: its peer, or "client via peer" behind
 * a trusted proxy. out has CONN_PEER_SIZE bytes. */
static const char *conn_peer_name(const struct conn *conn, char *out)
{
    if (conn->client == NULL) {
        conn_format_peer(&conn->peer_address.sa, out, CONN_PEER_SIZE);
        return out;
    }
    char peer[INET6_ADDRSTRLEN + 8];  /* [address]:port */
    char host[INET6_ADDRSTRLEN] = "?";
    const union conn_address *client = conn->client;
    const void *bytes = client->sa.sa_family == AF_INET ? (const void *)&client->in.sin_addr
                                                        : (const void *)&client->in6.sin6_addr;
    inet_ntop(client->sa.sa_family, bytes, host, sizeof(host));
    conn_format_peer(&conn->peer_address.sa, peer, sizeof(peer));
    /* A cut log name is harmless; the address itself is kept whole. */
    snprintf(out, CONN_PEER_SIZE, "%s via %s", host, peer);
    return out;
}

/* The name for one log line (the buffer lives to the end of the block). */
#define CONN_PEER(conn) conn_peer_name((conn), (char[CONN_PEER_SIZE]){ 0 })

static void conn_link(struct conn *conn)
{
    struct worker *worker = conn->worker;
    conn->next = worker->connections;
    if (worker->connections != NULL)
        worker->connections->previous = conn;
    worker->connections = conn;
}

static void conn_unlink(struct conn *conn)
{
    if (conn->previous != NULL)
        conn->previous->next = conn->next;
    else
        conn->worker->connections = conn->next;
    if (conn->next != NULL)
        conn->next->previous = conn->previous;
    conn->previous = conn->next = NULL;
}

static struct bufferevent *conn_new_bufferevent(struct worker *worker, evutil_socket_t fd,
                                                struct tls_context *tls)
{
    /* A plain connection's socket outlives its bufferevent (conn_free
     * closes it). */
    if (tls == NULL)
        return bufferevent_socket_new(worker->base, fd, 0);
    SSL *ssl = tls_context_new_ssl(tls);
    if (ssl == NULL)
        return NULL;
    /* With CLOSE_ON_FREE the bufferevent frees the SSL object too. */
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        worker->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        SSL_free(ssl);
        return NULL;
    }
    /* Browsers often just drop TCP after a WebSocket close. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

void conn_accept(struct worker *worker, evutil_socket_t fd, const struct sockaddr *address,
                 int address_length, struct tls_context *tls, const struct timespec *accepted_at)
{
    struct server *server = worker->server;
    int one = 1;
    if (address->sa_family == AF_INET || address->sa_family == AF_INET6) {
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
#ifdef TCP_NOTSENT_LOWAT
        int lowat = CONN_NOTSENT_LOWAT;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof(lowat));
#endif
    }

    struct conn *conn = calloc(1, sizeof(*conn));
    if (conn == NULL) {
        log_error(&server->log, "out of memory accepting a connection");
        evutil_closesocket(fd);
        return;
    }
    conn->server = server;
    conn->worker = worker;
    conn->config = config_retain(worker->config);
    conn->state = CONN_HTTP;
    conn->close_code = WS_CLOSE_ABNORMAL;
    conn->subscriber.worker = worker->index;
    conn->subscriber.deliver = conn_deliver;
    conn->subscriber.deliver_event = conn_deliver_event;
    conn->route_stats = -1;
    size_t kept = (size_t)address_length < sizeof(conn->peer_address) ? (size_t)address_length
                                                                       : sizeof(conn->peer_address);
    memcpy(&conn->peer_address, address, kept);
    conn->fd = fd;
    conn->bev = conn_new_bufferevent(worker, fd, tls);
    conn->tls = tls != NULL;
    if (conn->bev == NULL || conn_timers_get(worker) == NULL) {
        log_error(&server->log, "out of memory accepting %s", CONN_PEER(conn));
        bool socket_freed = conn->bev != NULL && conn->tls;   /* CLOSE_ON_FREE */
        if (conn->bev != NULL)
            bufferevent_free(conn->bev);
        if (!socket_freed)
            evutil_closesocket(fd);
        config_release(conn->config);
        free(conn);
        return;
    }
    /* Counted before the check so the limit covers every client
     * connection; one past it is still read, to answer 503. */
    unsigned before = __atomic_fetch_add(&server->connection_count, 1, __ATOMIC_RELAXED);
    conn->over_limit = before >= conn->config->limits.max_connections;
    conn_link(conn);
    conn->counted = true;
    bufferevent_setcb(conn->bev, conn_read_cb, conn_write_cb, conn_event_cb, conn);
    if (bufferevent_enable(conn->bev, EV_READ | EV_WRITE) != 0) {
        conn_drop(conn);
        return;
    }
    /* The head is due handshake_timeout after accept(), however long a
     * TLS listener spent looking at the first bytes. */
    struct timespec start = accepted_at != NULL ? *accepted_at : conn_now();
    conn_arm_timer_at(conn, conn_time_add(start, conn->config->websocket.handshake_timeout));
    log_debug(&server->log, "accept %s worker %u", CONN_PEER(conn), worker->index);
    /* A trusted proxy carries many clients: its connections are counted
     * by the address it forwards, once the request head says which. */
    if (proxy_peer_trusted(address, &conn->config->proxy))
        return;
    conn_count_address(conn, address);
    /* Refused before reading anything, so a flood from one address costs
     * no request buffers; TLS is answered once its handshake is done. */
    if (conn->over_address_limit && !conn->tls)
        conn_refuse_address(conn, NULL);
}

/* Counts the connection against its client address; an address over
 * max_connections_per_ip (or a count that cannot be kept) marks it to be
 * refused. */
static void conn_count_address(struct conn *conn, const struct sockaddr *address)
{
    if (conn->address_counted || !addrcount_key_of(address, &conn->address_key))
        return;
    conn->over_address_limit =
        !server_address_admit(conn->server, &conn->address_key,
                              conn->config->limits.max_connections_per_ip, &conn->address_counted);
}

static void conn_uncount_address(struct conn *conn)
{
    if (conn->address_counted) {
        conn->address_counted = false;
        server_address_remove(conn->server, &conn->address_key);
    }
}

/* A connection that has said all it will say no longer holds a place
 * under max_connections: the limit is for clients being served. */
static void conn_uncount(struct conn *conn)
{
    if (conn->counted) {
        conn->counted = false;
        __atomic_sub_fetch(&conn->server->connection_count, 1, __ATOMIC_RELAXED);
    }
    conn_uncount_address(conn);
}

static void conn_log_close(struct conn *conn)
{
    if (conn->upgraded)
        log_info(&conn->server->log, "close %s %s code=%u", CONN_PEER(conn),
                 conn->path != NULL ? conn->path : "-", conn->close_code);
    else
        log_debug(&conn->server->log, "disconnect %s", CONN_PEER(conn));
}

static void conn_stop_reading(struct conn *conn)
{
    if (conn->bev != NULL)
        bufferevent_disable(conn->bev, EV_READ);
    else
        event_del(&conn->read_event);
}

static int conn_start_reading(struct conn *conn)
{
    if (conn->bev != NULL)
        return bufferevent_enable(conn->bev, EV_READ);
    return event_add(&conn->read_event, NULL);
}

/* Marks the connection dead and queues it for freeing; the socket is closed
 * on the reap pass, which runs before the loop waits again. */
static void conn_drop(struct conn *conn)
{
    if (conn->state == CONN_DEAD)
        return;
    conn->state = CONN_DEAD;
    conn_log_close(conn);
    if (conn->route_stats >= 0 && conn->upgraded)
        conn->worker->stats.routes[conn->route_stats].open--;
    /* Subscriptions end when the connection is freed, outside any delivery
     * loop: unsubscribing here could unlink a receiver that a publish in
     * progress is about to visit. Until then a dead connection takes no
     * deliveries. */
    conn_stop_reading(conn);
    if (conn->bev != NULL)
        bufferevent_disable(conn->bev, EV_WRITE);
    conn_disarm_timer(conn);
    conn_flush_unlist(conn);
    if (conn->write_event != NULL)
        event_del(conn->write_event);
    conn->reap_next = conn->worker->reap_list;
    conn->worker->reap_list = conn;
    worker_schedule_reap(conn->worker);
}

static void conn_free(struct conn *conn)
{
    struct worker *worker = conn->worker;
    hub_unsubscribe(conn->server->hub, &conn->subscriber);
    pubsub_session_free(conn->pubsub);
    cluster_waiter_orphan(conn->api_waiter);
    conn_unlink(conn);
    conn_flush_unlist(conn);
    if (conn->write_event != NULL)
        event_free(conn->write_event);
    frame_queue_clear(&conn->out);
    if (conn->bev != NULL)
        bufferevent_free(conn->bev);
    else
        event_del(&conn->read_event);
    if (!conn->tls)
        evutil_closesocket(conn->fd);
    conn_disarm_timer(conn);
    if (conn->resume != NULL)
        event_free(conn->resume);
    if (conn->decoder != NULL) {
        ws_decoder_release(conn->decoder);
        free(conn->decoder);
    }
    if (conn->deflate != NULL) {
        deflate_inflater_free(conn->deflate->inflater);
        free(conn->deflate);
    }
    free(conn->client);
    free(conn->path);
    free(conn->channel);
    free(conn->user);
    if (conn->identity != NULL) {
        auth_identity_clear(conn->identity);
        free(conn->identity);
    }
    config_release(conn->config);
    conn_uncount(conn);
    free(conn);
    worker_connection_gone(worker);
}

void conn_reap(struct worker *worker)
{
    while (worker->reap_list != NULL) {
        struct conn *conn = worker->reap_list;
        worker->reap_list = conn->reap_next;
        conn_free(conn);
    }
}

/* Everything queued is written, then our side is shut down and the peer
 * gets CONN_LINGER_SECONDS to close its side. */
static void conn_finish(struct conn *conn)
{
    conn->state = CONN_FLUSHING;
    conn_stop_reading(conn);
    conn_disarm_timer(conn);
    conn_arm_timer_seconds(conn, conn->config->websocket.close_timeout + CONN_LINGER_SECONDS);
    if (conn_queued(conn) == 0)
        conn_linger(conn);
}

static void conn_linger(struct conn *conn)
{
    conn->state = CONN_LINGER;
    conn_uncount(conn);
    /* Everything is written: a TLS close_notify can go straight out. */
    if (conn->tls)
        (void)SSL_shutdown(bufferevent_openssl_get_ssl(conn->bev));
    if (shutdown(conn->fd, SHUT_WR) != 0) {
        conn_drop(conn);
        return;
    }
    conn_disarm_timer(conn);
    conn_arm_timer_seconds(conn, CONN_LINGER_SECONDS);
    if (conn_start_reading(conn) != 0)
        conn_drop(conn);
}

/* ------------------------------------------------------------- output */

static void conn_flush_one(struct conn *conn);

static void conn_flush_cb(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    struct conn_flush *flush = arg;
    /* conn_flush_one never lists a connection again (what it cannot write
     * waits for EV_WRITE), so this ends. */
    while (flush->list != NULL) {
        struct conn *conn = flush->list;
        conn_flush_unlist(conn);
        conn_flush_one(conn);
    }
}

static struct conn_flush *conn_flush_get(struct worker *worker)
{
    if (worker->flush == NULL) {
        struct conn_flush *flush = calloc(1, sizeof(*flush));
        if (flush == NULL)
            return NULL;
        flush->event = event_new(worker->base, -1, 0, conn_flush_cb, flush);
        if (flush->event == NULL) {
            free(flush);
            return NULL;
        }
        worker->flush = flush;
    }
    return worker->flush;
}

static void conn_reader_free(struct worker *worker);

void conn_flush_free(struct worker *worker)
{
    conn_reader_free(worker);
    conn_timers_free(worker);
    if (worker->flush == NULL)
        return;
    event_free(worker->flush->event);
    free(worker->flush);
    worker->flush = NULL;
}

static void conn_flush_unlist(struct conn *conn)
{
    if (!conn->flush_listed)
        return;
    struct conn_flush *flush = conn->worker->flush;
    if (conn->flush_previous != NULL)
        conn->flush_previous->flush_next = conn->flush_next;
    else
        flush->list = conn->flush_next;
    if (conn->flush_next != NULL)
        conn->flush_next->flush_previous = conn->flush_previous;
    conn->flush_previous = conn->flush_next = NULL;
    conn->flush_listed = false;
}

/* Has the queue written at the end of this loop pass, unless it already
 * is to be, or waits for the socket to take more. */
static int conn_flush_later(struct conn *conn)
{
    if (conn->flush_listed ||
        (conn->write_event != NULL && event_pending(conn->write_event, EV_WRITE, NULL)))
        return 0;
    struct conn_flush *flush = conn_flush_get(conn->worker);
    if (flush == NULL)
        return -1;
    if (flush->list == NULL)
        event_active(flush->event, EV_WRITE, 0);
    else
        flush->list->flush_previous = conn;
    conn->flush_next = flush->list;
    conn->flush_previous = NULL;
    flush->list = conn;
    conn->flush_listed = true;
    return 0;
}

static void conn_writable_cb(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    conn_flush_one(arg);
}

/* The write event persists while the socket keeps blocking, so a slow
 * reader costs no epoll_ctl per write. */
static int conn_wait_writable(struct conn *conn)
{
    if (conn->write_event == NULL) {
        conn->write_event = event_new(conn->worker->base, conn->fd, EV_WRITE | EV_PERSIST,
                                      conn_writable_cb, conn);
        if (conn->write_event == NULL)
            return -1;
    }
    if (event_pending(conn->write_event, EV_WRITE, NULL))
        return 0;
    return event_add(conn->write_event, NULL);
}

/* Writes the frame queue of a direct connection. */
static void conn_flush_one(struct conn *conn)
{
    if (conn->state == CONN_DEAD || conn->state == CONN_LINGER)
        return;
    switch (frame_queue_write(&conn->out, conn->fd)) {
    case FRAME_QUEUE_EMPTY:
        if (conn->write_event != NULL)
            event_del(conn->write_event);
        if (conn->state == CONN_FLUSHING)
            conn_linger(conn);
        break;
    case FRAME_QUEUE_BLOCKED:
        if (conn_wait_writable(conn) != 0)
            conn_drop(conn);
        break;
    case FRAME_QUEUE_ERROR:
        log_debug(&conn->server->log, "socket error %s: %s", CONN_PEER(conn),
                  evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        conn_drop(conn);
        break;
    }
}

/* Queues frame on a direct connection. Returns 0, or -1 after dropping it. */
static int conn_push_frame(struct conn *conn, struct shared_frame *frame)
{
    if (frame_queue_push(&conn->out, frame) != 0 || conn_flush_later(conn) != 0) {
        log_error(&conn->server->log, "out of memory queueing to %s", CONN_PEER(conn));
        conn_drop(conn);
        return -1;
    }
    return 0;
}

/* Bytes waiting to be written, whichever path holds them. */
static size_t conn_queued(const struct conn *conn)
{
    size_t buffered = conn->bev != NULL ? evbuffer_get_length(bufferevent_get_output(conn->bev)) : 0;
    return buffered + frame_queue_bytes(&conn->out);
}

/* Writes bytes, one frame or HTTP answer, that nobody else shares. */
static void conn_write_bytes(struct conn *conn, const uint8_t *header, size_t header_length,
                             const uint8_t *payload, size_t length)
{
    if (conn->direct) {
        struct shared_frame *frame = shared_frame_new(header_length + length);
        if (frame == NULL) {
            log_error(&conn->server->log, "out of memory writing to %s", CONN_PEER(conn));
            conn_drop(conn);
            return;
        }
        memcpy(frame->bytes, header, header_length);
        if (length > 0)
            memcpy(frame->bytes + header_length, payload, length);
        (void)conn_push_frame(conn, frame);
        shared_frame_release(frame);
        return;
    }
    struct evbuffer *output = bufferevent_get_output(conn->bev);
    if (evbuffer_add(output, header, header_length) != 0 ||
        (length > 0 && evbuffer_add(output, payload, length) != 0)) {
        log_error(&conn->server->log, "out of memory writing to %s", CONN_PEER(conn));
        conn_drop(conn);
    }
}

static void conn_write_frame(struct conn *conn, uint8_t opcode, const uint8_t *payload,
                             size_t length)
{
    uint8_t header[WSFRAME_MAX_HEADER];
    size_t header_length = wsframe_header_build(header, true, 0, opcode, length);
    conn_write_bytes(conn, header, header_length, payload, length);
}

static void conn_write_close(struct conn *conn, unsigned code, const char *reason)
{
    uint8_t payload[WSFRAME_MAX_CONTROL_PAYLOAD];
    size_t length = wsframe_close_payload_build(payload, code, reason);
    conn->close_code = code;
    conn_write_frame(conn, WS_OP_CLOSE, payload, length);
}

/* Best effort for a connection about to be dropped: the close frame is sent
 * straight to the socket, and only when nothing else is queued, since a
 * frame written after a partly sent one would corrupt the stream. */
static void conn_send_close_now(struct conn *conn, unsigned code, const char *reason)
{
    conn->close_code = code;
    /* Raw bytes on a TLS socket would corrupt the record stream. */
    if (conn->tls || conn_queued(conn) != 0)
        return;
    uint8_t frame[WSFRAME_MAX_HEADER + WSFRAME_MAX_CONTROL_PAYLOAD];
    uint8_t payload[WSFRAME_MAX_CONTROL_PAYLOAD];
    size_t length = wsframe_close_payload_build(payload, code, reason);
    size_t header_length = wsframe_header_build(frame, true, 0, WS_OP_CLOSE, length);
    memcpy(frame + header_length, payload, length);
    (void)send(conn->fd, frame, header_length + length,
               MSG_DONTWAIT | MSG_NOSIGNAL);
}

static void conn_frame_unref(const void *data, size_t length, void *extra)
{
    (void)data;
    (void)length;
    shared_frame_release(extra);
}

/* A reader whose queue passes outbound_queue_max is cut off, whatever
 * filled it: deliveries, and also the pongs and echoes it asked for by
 * sending, or a client that sends without reading would grow it without
 * bound. One frame larger than the bound is let into an empty queue, so a
 * large message never cuts off a reader that is keeping up. Returns false
 * after starting to close the connection. */
static bool conn_check_queue(struct conn *conn, size_t just_added)
{
    if (conn->state != CONN_OPEN)
        return true;
    size_t queued = conn_queued(conn);
    if (queued <= conn->config->limits.outbound_queue_max ||
        queued <= just_added + WSFRAME_MAX_HEADER)
        return true;
    log_warn(&conn->server->log, "slow reader %s %s: %zu bytes queued, closing 1008",
             CONN_PEER(conn), conn->path, queued);
    conn->worker->stats.slow_reader_drops++;
    /* It gets no more messages. The close frame goes after what is queued,
     * the only place it can go: a reader that is slow but alive learns why
     * once it has read the rest, one that stopped is dropped at
     * close_timeout, its queue no longer growing. */
    conn_close(conn, WS_CLOSE_POLICY, "slow reader");
    return false;
}

/* Adds frame to a bufferevent's output (TLS connections; plain ones queue
 * references in their frame_queue): by reference when that saves memory,
 * else as a copy. libevent gives every referenced piece its own chain of at least
 * 1 KiB (MIN_BUFFER_SIZE), so a reference to a small frame costs more
 * than the frame; copies pack into shared chains. Referencing every frame
 * made a queue of small messages cost up to 60 times its length, and
 * outbound_queue_max, which counts the length, no bound on memory. */
static int conn_queue_frame(struct evbuffer *output, struct shared_frame *frame)
{
    if (frame->length < CONN_REFERENCE_MIN)
        return evbuffer_add(output, frame->bytes, frame->length);
    shared_frame_retain(frame);
    if (evbuffer_add_reference(output, frame->bytes, frame->length, conn_frame_unref, frame) != 0) {
        shared_frame_release(frame);
        return -1;
    }
    return 0;
}

/* Queues a shared frame (conn_check_queue bounds the queue). */
static void conn_send_frame(void *owner, struct shared_frame *frame)
{
    struct conn *conn = owner;
    if (conn->state != CONN_OPEN)
        return;
    if (conn->direct) {
        if (conn_push_frame(conn, frame) == 0)
            conn_check_queue(conn, frame->length);
        return;
    }
    struct evbuffer *output = bufferevent_get_output(conn->bev);
    if (conn_queue_frame(output, frame) != 0) {
        log_error(&conn->server->log, "out of memory queueing to %s", CONN_PEER(conn));
        conn_drop(conn);
        return;
    }
    conn_check_queue(conn, frame->length);
}

/* The frame of message this connection gets: compressed when it
 * negotiated permessage-deflate and the message is not too small to gain. */
static struct shared_frame *conn_message_frame(struct conn *conn, struct message *message,
                                               bool envelope)
{
    const struct deflate_options *options = &conn->config->websocket.compression;
    if (conn->deflate && message->length >= options->min_size) {
        struct shared_frame *frame = message_deflated_frame(
            message, envelope, conn->worker->compressors, options,
            conn->deflate->params.server_max_window_bits);
        if (frame != NULL)
            return frame;
    }
    return envelope ? message_envelope_frame(message) : message_raw_frame(message);
}

static void conn_send_message(struct conn *conn, struct message *message, bool envelope)
{
    if (conn->state != CONN_OPEN)
        return;
    struct shared_frame *frame = conn_message_frame(conn, message, envelope);
    if (frame == NULL)
        return;
    conn->worker->stats.deliveries++;
    conn->worker->stats.bytes_sent += frame->length;
    conn_send_frame(conn, frame);
}

static void conn_send_envelope(void *owner, struct message *message)
{
    conn_send_message(owner, message, true);
}

static void conn_deliver(struct hub_subscriber *subscriber, struct message *message)
{
    conn_send_message(CONN_FROM_SUBSCRIBER(subscriber), message, false);
}

static void conn_deliver_event(struct hub_subscriber *subscriber, struct shared_frame *frame)
{
    conn_send_frame(CONN_FROM_SUBSCRIBER(subscriber), frame);
}

/* ------------------------------------------------------ HTTP responses */

static void conn_respond(struct conn *conn, int status, const char *extra_headers,
                         const char *body)
{
    char head[1024];
    size_t body_length = body != NULL ? strlen(body) : 0;
    int length = http_response_head(head, sizeof(head), status, "text/plain; charset=utf-8",
                                    (long long)body_length, true, extra_headers);
    struct evbuffer *output = bufferevent_get_output(conn->bev);
    if (length < 0 || evbuffer_add(output, head, (size_t)length) != 0 ||
        evbuffer_add(output, body, body_length) != 0) {
        conn_drop(conn);
        return;
    }
    conn_finish(conn);
}

static enum stats_reject conn_reject_reason(const struct http_request *request, int status)
{
    switch (status) {
    case 400:
        return request != NULL && !http_request_method_is(request, "GET") ? STATS_REJECT_METHOD
                                                                           : STATS_REJECT_BAD_REQUEST;
    case 401:
        return STATS_REJECT_AUTH;
    case 403:
        return STATS_REJECT_ORIGIN;
    case 404:
        return STATS_REJECT_NOT_FOUND;
    case 405:
        return STATS_REJECT_METHOD;
    case 408:
        return STATS_REJECT_TIMEOUT;
    case 413:
    case 431:
        return STATS_REJECT_TOO_LARGE;
    case 426:
        return STATS_REJECT_VERSION;
    case 503:
        return STATS_REJECT_LIMIT;
    default:
        return STATS_REJECT_BAD_REQUEST;
    }
}

/* Counts a refusal: as a rejected handshake when the request was one (or
 * could not even be read), else as a plain HTTP request. */
static void conn_count_reject(struct conn *conn, const struct http_request *request,
                              enum stats_reject reason)
{
    bool handshake = request == NULL || conn->route != NULL ||
                     http_request_has_token(request, "Upgrade", "websocket");
    if (handshake)
        conn->worker->stats.rejected[reason]++;
    else
        conn->worker->stats.http_requests++;
}

static void conn_reject_counted(struct conn *conn, const struct http_request *request, int status,
                                const char *reason, const char *extra_headers,
                                enum stats_reject counted_as)
{
    /* The path only: a query string may carry a token, which logs must not keep. */
    int method_length = request != NULL ? (int)request->method_length : 1;
    const char *path = conn->path != NULL ? conn->path : "-";
    const char *query_mark = request != NULL && memchr(request->target, '?', request->target_length)
                                 ? "?..."
                                 : "";
    log_info(&conn->server->log, "reject %s \"%.*s %s%s\" %d: %s", CONN_PEER(conn), method_length,
             request != NULL ? request->method : "-", path, query_mark, status, reason);
    conn_count_reject(conn, request, counted_as);
    char body[256];
    snprintf(body, sizeof(body), "%d %s: %s\n", status, http_status_reason(status), reason);
    conn_respond(conn, status, extra_headers, body);
}

static void conn_reject(struct conn *conn, const struct http_request *request, int status,
                        const char *reason, const char *extra_headers)
{
    conn_reject_counted(conn, request, status, reason, extra_headers,
                        conn_reject_reason(request, status));
}

static void conn_refuse_address(struct conn *conn, const struct http_request *request)
{
    /* Its place under max_connections is given back at once: a flood from
     * one address must not fill the limit even while its refusals are
     * being written, which takes longer with workers refusing in parallel. */
    conn_uncount(conn);
    conn_reject_counted(conn, request, 503, "too many connections from this address",
                        "Retry-After: 1\r\n", STATS_REJECT_ADDRESS_LIMIT);
}

/* Past max_connections, max_connections_per_ip or max_memory: refused
 * with 503 (monitoring endpoints excepted from the memory limit, so an
 * operator can still see why). Returns true when refused. */
static bool conn_refuse_over_limits(struct conn *conn, const struct http_request *request,
                                    size_t path_length)
{
    if (conn->over_limit) {
        conn_reject(conn, request, 503, "too many connections", "Retry-After: 1\r\n");
        return true;
    }
    if (conn->over_address_limit) {
        conn_refuse_address(conn, request);
        return true;
    }
    if (!api_is_monitoring(request->target, path_length) && server_over_memory(conn->server, conn->config)) {
        conn_reject_counted(conn, request, 503, "memory limit reached", "Retry-After: 1\r\n",
                            STATS_REJECT_MEMORY);
        return true;
    }
    return false;
}

/* ---------------------------------------------------------- static files */

static void conn_serve_file(struct conn *conn, const struct http_request *request,
                            const char *path, size_t path_length)
{
    bool head_only = http_request_method_is(request, "HEAD");
    if (!head_only && !http_request_method_is(request, "GET")) {
        conn_reject(conn, request, 405, "method not allowed", "Allow: GET, HEAD\r\n");
        return;
    }
    const char *root = conn->config->http.static_root;
    char file_path[4096];
    int resolved = root != NULL ? static_files_resolve(root, path, path_length, file_path,
                                                       sizeof(file_path))
                                : STATIC_FILES_NOT_FOUND;
    if (resolved == STATIC_FILES_BAD_REQUEST) {
        conn_reject(conn, request, 400, "bad path", NULL);
        return;
    }
    int fd = resolved == STATIC_FILES_OK ? open(file_path, O_RDONLY | O_CLOEXEC) : -1;
    struct stat info;
    if (fd < 0 || fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
        if (fd >= 0)
            close(fd);
        conn_reject(conn, request, 404, "not found", NULL);
        return;
    }
    char head[512];
    int length = http_response_head(head, sizeof(head), 200,
                                    static_files_content_type(file_path),
                                    (long long)info.st_size, true,
                                    "Cache-Control: no-cache\r\n");
    struct evbuffer *output = bufferevent_get_output(conn->bev);
    if (length < 0 || evbuffer_add(output, head, (size_t)length) != 0) {
        close(fd);
        conn_drop(conn);
        return;
    }
    if (head_only || info.st_size == 0) {
        close(fd);
    } else if (evbuffer_add_file(output, fd, 0, info.st_size) != 0) {
        /* evbuffer_add_file closes fd on failure as well */
        conn_drop(conn);
        return;
    }
    conn->worker->stats.http_requests++;
    log_debug(&conn->server->log, "static %s \"%.*s %s\" 200", CONN_PEER(conn),
              (int)request->method_length, request->method, conn->path);
    conn_finish(conn);
}

/* ------------------------------------------------------------ upgrade */

/* ------------------------------------------------------------ identity */

/* The token from ?token=, else Authorization: Bearer, else the configured
 * cookie; malloc'd, or NULL when none was sent. *malformed is set when one
 * was sent but cannot be read. */
static char *conn_find_token(const struct conn *conn, const struct http_request *request,
                             const char *query, size_t query_length, bool *malformed)
{
    char *token = malloc(CONN_TOKEN_MAX + 1);
    if (token == NULL)
        return NULL;
    int length = query != NULL ? http_query_param(query, query_length, "token", token,
                                                  CONN_TOKEN_MAX + 1)
                               : -1;
    if (length >= 0) {
        *malformed = length == 0;
        return token;
    }
    *malformed = length == -2;
    const char *bearer;
    size_t bearer_length;
    if (!*malformed && http_request_bearer(request, &bearer, &bearer_length) &&
        bearer_length <= CONN_TOKEN_MAX) {
        memcpy(token, bearer, bearer_length);
        token[bearer_length] = '\0';
        return token;
    }
    const char *cookie_name = conn->config->auth.cookie;
    if (!*malformed && cookie_name != NULL) {
        size_t name_length = strlen(cookie_name);
        for (size_t i = 0; i < request->header_count; i++) {
            const struct http_header *h = &request->headers[i];
            if (!http_equal_nocase(h->name, h->name_length, "Cookie", 6))
                continue;
            /* cookie-string: name=value pairs separated by "; " */
            const char *p = h->value;
            const char *end = h->value + h->value_length;
            while (p < end) {
                while (p < end && (*p == ' ' || *p == ';'))
                    p++;
                const char *pair_end = memchr(p, ';', (size_t)(end - p));
                if (pair_end == NULL)
                    pair_end = end;
                if ((size_t)(pair_end - p) > name_length && memcmp(p, cookie_name, name_length) == 0 &&
                    p[name_length] == '=' && (size_t)(pair_end - p - (long)name_length - 1) <= CONN_TOKEN_MAX) {
                    size_t value_length = (size_t)(pair_end - p) - name_length - 1;
                    memcpy(token, p + name_length + 1, value_length);
                    token[value_length] = '\0';
                    return token;
                }
                p = pair_end;
            }
        }
    }
    free(token);
    return NULL;
}

static int conn_name_anonymous(struct conn *conn)
{
    uint32_t random = 0;
    if (getentropy(&random, sizeof(random)) != 0)
        random = (uint32_t)(uintptr_t)conn;
    char name[16];
    snprintf(name, sizeof(name), "anon-%08x", (unsigned)random);
    conn->user = strdup(name);
    return conn->user != NULL ? 0 : 500;
}

/* Names the connection from ?user= or a generated name. */
static int conn_name_from_query(struct conn *conn, const char *query, size_t query_length)
{
    char name[CONN_USER_MAX * 3 + 1];
    int length = query != NULL ? http_query_param(query, query_length, "user", name, sizeof(name))
                               : -1;
    if (length == -1)
        return conn_name_anonymous(conn);
    if (length < 0 || !auth_user_name_valid(name, (size_t)length))
        return 400;
    conn->user = strdup(name);
    return conn->user != NULL ? 0 : 500;
}

/* Establishes who the connection is. Returns 0, or the HTTP status to
 * refuse it with (reason set). */
static int conn_identify(struct conn *conn, const struct http_request *request, const char *query,
                         size_t query_length, const char *channel, const char **reason)
{
    const struct auth_config *auth = &conn->config->auth;
    if (auth->verifier == NULL) {
        *reason = "invalid user name";
        return conn_name_from_query(conn, query, query_length);
    }
    bool malformed = false;
    char *token = conn_find_token(conn, request, query, query_length, &malformed);
    if (token == NULL) {
        *reason = malformed ? "malformed token" : "a token is required";
        if (malformed || auth->required)
            return 401;
        *reason = "invalid user name";
        return conn_name_from_query(conn, query, query_length);
    }
    struct auth_identity identity;
    int verified = auth_verify(auth->verifier, token, time(NULL), &identity, reason);
    free(token);
    if (verified != 0)
        return 401;
    conn->identity = malloc(sizeof(*conn->identity));
    if (conn->identity == NULL) {
        auth_identity_clear(&identity);
        return 500;
    }
    *conn->identity = identity;
    conn->user = strdup(identity.user);
    if (conn->user == NULL)
        return 500;
    if (channel != NULL && !auth_identity_allows(conn->identity, channel)) {
        *reason = "the token does not allow this channel";
        return 403;
    }
    return 0;
}

/* ------------------------------------------------------------ upgrade */

static void conn_start_keepalive(struct conn *conn)
{
    conn->last_frame_at = conn_now();
    conn_disarm_timer(conn);
    unsigned interval = conn->config->websocket.ping_interval;
    if (interval == 0)
        return;
    conn->next_ping_at = conn_time_add(conn->last_frame_at, interval);
    conn_arm_timer_at(conn, conn->next_ping_at);
}

/* Subscribes the connection for its route, before the 101 goes out, so
 * whatever is published after the client has seen 101 reaches it. Returns
 * 1 when a presence join is due, 0, or -1 when out of memory. */
static int conn_subscribe(struct conn *conn, const char *channel)
{
    if (conn->route->mode == ROUTE_MODE_PUBSUB) {
        struct pubsub_host host = {
            .worker = conn->worker,
            .config = conn->config,
            .user = conn->user,
            .identity = conn->identity,
            .echo_self = conn->route->echo_self,
            .send = conn_send_frame,
            .send_message = conn_send_envelope,
            .owner = conn,
        };
        conn->pubsub = pubsub_session_new(&host);
        return conn->pubsub != NULL ? 0 : -1;
    }
    if (conn->route->mode != ROUTE_MODE_BROADCAST)
        return 0;
    conn->channel = strdup(channel);
    if (conn->channel == NULL)
        return -1;
    conn->subscriber.user = conn->user;
    conn->subscriber.presence_events = conn->route->presence_events;
    return hub_subscribe(conn->server->hub, conn->channel,
                         config_channel_rule(conn->config, conn->channel), &conn->subscriber);
}

/* ?since=N[&epoch=E] on a broadcast route: replay held messages as raw
 * frames right after the 101. */
static void conn_replay_from_query(struct conn *conn, const char *query, size_t query_length)
{
    char since_text[24];
    char epoch[HUB_EPOCH_SIZE];
    if (query == NULL || conn->route->mode != ROUTE_MODE_BROADCAST ||
        http_query_param(query, query_length, "since", since_text, sizeof(since_text)) <= 0)
        return;
    char *end = NULL;
    errno = 0;
    unsigned long long since = strtoull(since_text, &end, 10);
    if (errno != 0 || *end != '\0' || since_text[0] == '-')
        return;
    bool has_epoch = http_query_param(query, query_length, "epoch", epoch, sizeof(epoch)) >= 0;
    int64_t now = server_now();
    struct hub_position position;
    hub_position(conn->server->hub, &conn->subscriber, true, since, has_epoch ? epoch : NULL, now, &position);
    hub_replay(conn->server->hub, &conn->subscriber, position.replay_after, now);
}

static void conn_count_open(struct conn *conn)
{
    conn->route_stats = stats_route_index(&conn->worker->stats, conn->route->path);
    if (conn->route_stats >= 0) {
        conn->worker->stats.routes[conn->route_stats].open++;
        conn->worker->stats.routes[conn->route_stats].total++;
    }
}

/* How the client reached us: TLS here, or what a trusted proxy says in
 * X-Forwarded-Proto. */
static const char *conn_request_scheme(const struct conn *conn, const struct http_request *request)
{
    if (conn->tls)
        return "https";
    const struct http_header *proto = http_request_header(request, "X-Forwarded-Proto");
    if (proto != NULL &&
        proxy_peer_trusted(&conn->peer_address.sa, &conn->config->proxy) &&
        http_equal_nocase(proto->value, proto->value_length, "https", 5))
        return "https";
    return "http";
}

/* Accepts a permessage-deflate offer: the inflater is made and the
 * extension's header goes into the 101 response (before its blank line).
 * Returns 0 (also when nothing was negotiated) or -1. */
static int conn_negotiate_deflate(struct conn *conn, const struct http_request *request,
                                  char *response, size_t size, int *length)
{
    char extension[DEFLATE_RESPONSE_SIZE];
    struct deflate_params params;
    if (!deflate_negotiate(request, &conn->config->websocket.compression, &params, extension))
        return 0;
    conn->deflate = calloc(1, sizeof(*conn->deflate));
    if (conn->deflate == NULL)
        return -1;
    conn->deflate->params = params;
    conn->deflate->inflater = deflate_inflater_new(&params);
    if (conn->deflate->inflater == NULL)
        return -1;
    size_t head = (size_t)*length - 2;   /* drop the final blank line */
    int added = snprintf(response + head, size - head, "Sec-WebSocket-Extensions: %s\r\n\r\n",
                         extension);
    if (added < 0 || (size_t)added >= size - head)
        return -1;
    *length = (int)(head + (size_t)added);
    return 0;
}

/* From the upgrade's answer on, the connection writes itself (see struct
 * conn_flush). The bufferevent's output is empty then, and stays so: only
 * the bufferevent may drain it (libevent freezes its start). */
static int conn_go_direct(struct conn *conn)
{
    if (evbuffer_get_length(bufferevent_get_output(conn->bev)) != 0 ||
        bufferevent_disable(conn->bev, EV_WRITE) != 0)
        return -1;
    conn->direct = true;
    return 0;
}

static void conn_upgrade(struct conn *conn, const struct http_request *request,
                         const struct route_config *route, const char *channel,
                         const char *query, size_t query_length)
{
    const struct websocket_config *ws = &conn->config->websocket;
    struct handshake_policy policy = {
        .allowed_origins = (const char *const *)ws->allowed_origins,
        .allowed_origin_count = ws->allowed_origin_count,
        .request_scheme = conn_request_scheme(conn, request),
        .subprotocols = (const char *const *)ws->subprotocols,
        .subprotocol_count = ws->subprotocol_count,
    };
    conn->route = route;
    struct handshake_result result;
    if (handshake_check(request, &policy, &result) != 101) {
        conn_reject(conn, request, result.status, result.reason,
                    result.status == 426 ? "Sec-WebSocket-Version: 13\r\n" : NULL);
        return;
    }
    const char *reason = "internal error";
    int refused = conn_identify(conn, request, query, query_length,
                                route->mode == ROUTE_MODE_BROADCAST ? channel : NULL, &reason);
    if (refused != 0) {
        conn_reject_counted(conn, request, refused, reason,
                            refused == 401 ? "WWW-Authenticate: Bearer\r\n" : NULL,
                            refused == 403 ? STATS_REJECT_FORBIDDEN : conn_reject_reason(request, refused));
        return;
    }
    char response[768];
    int length = handshake_response(response, sizeof(response), &result);
    if (length > 0 && conn_negotiate_deflate(conn, request, response, sizeof(response), &length) != 0)
        length = -1;
    int joined = length < 0 ? -1 : conn_subscribe(conn, channel);
    if (joined < 0) {
        log_error(&conn->server->log, "cannot set up %s %s", CONN_PEER(conn), conn->path);
        conn_reject(conn, request, 500, "internal error", NULL);
        return;
    }
    if (!conn->tls && conn_go_direct(conn) != 0) {
        conn_drop(conn);
        return;
    }
    if (conn->direct) {
        conn_write_bytes(conn, (const uint8_t *)response, (size_t)length, NULL, 0);
        if (conn->state == CONN_DEAD)
            return;
    } else if (evbuffer_add(bufferevent_get_output(conn->bev), response, (size_t)length) != 0) {
        conn_drop(conn);
        return;
    }
    ratelimit_init(&conn->rate, conn->config->limits.burst, server_now());
    conn->state = CONN_OPEN;
    conn->upgraded = true;
    conn_count_open(conn);
    log_info(&conn->server->log, "open %s %s user=%s", CONN_PEER(conn), conn->path, conn->user);
    conn_replay_from_query(conn, query, query_length);
    if (joined == 1)
        hub_announce_join(conn->server->hub, &conn->subscriber);
    conn_start_keepalive(conn);
}

/* ------------------------------------------------------------ HTTP API */

static void conn_respond_api(struct conn *conn, const struct http_request *request,
                             const struct api_response *response)
{
    char head[1024];
    bool head_only = http_request_method_is(request, "HEAD");
    int length = http_response_head(head, sizeof(head), response->status, response->content_type,
                                    (long long)response->body_length, true,
                                    response->extra_headers);
    struct evbuffer *output = bufferevent_get_output(conn->bev);
    if (length < 0 || evbuffer_add(output, head, (size_t)length) != 0 ||
        (!head_only && evbuffer_add(output, response->body, response->body_length) != 0)) {
        conn_drop(conn);
        return;
    }
    log_debug(&conn->server->log, "api %s \"%.*s %s\" %d", CONN_PEER(conn),
              (int)request->method_length, request->method, conn->path, response->status);
    conn->worker->stats.http_requests++;
    conn_finish(conn);
}

/* A refusal of an API request before its body is read, in the API's JSON
 * error form. */
static void conn_api_error(struct conn *conn, const struct http_request *request, int status,
                           const char *text)
{
    struct api_response response;
    api_refuse(&response, status, text);
    log_info(&conn->server->log, "reject %s \"%.*s %s\" %d: %s", CONN_PEER(conn),
             (int)request->method_length, request->method, conn->path, status, text);
    conn_respond_api(conn, request, &response);
    free(response.body);
}

/* Reads Content-Length: 0 when absent, -1 when malformed. */
static long long conn_content_length(const struct http_request *request)
{
    if (http_request_header_count(request, "Content-Length") > 1)
        return -1;
    const struct http_header *header = http_request_header(request, "Content-Length");
    if (header == NULL)
        return 0;
    if (header->value_length == 0 || header->value_length > 18)
        return -1;
    long long value = 0;
    for (size_t i = 0; i < header->value_length; i++) {
        if (header->value[i] < '0' || header->value[i] > '9')
            return -1;
        value = value * 10 + (header->value[i] - '0');
    }
    return value;
}

/* Answers an API request once its body is in. Returns false while the
 * body is still arriving (nothing may be drained then). */
static bool conn_handle_api(struct conn *conn, const struct http_request *request,
                            size_t head_length, size_t path_length, const char *query,
                            size_t query_length)
{
    if (http_request_header(request, "Transfer-Encoding") != NULL) {
        conn_api_error(conn, request, 501, "Transfer-Encoding is not supported");
        return true;
    }
    long long body_length = conn_content_length(request);
    if (body_length < 0) {
        conn_api_error(conn, request, 400, "invalid Content-Length");
        return true;
    }
    size_t limit = api_body_limit(conn->config, request->target, path_length);
    if ((unsigned long long)body_length > limit) {
        conn_api_error(conn, request, 413, "request body too large");
        return true;
    }
    /* Whether the client may use the API is known from the head: the body
     * of a request that will be refused is never waited for or buffered. */
    struct api_response early;
    if (api_refuse_early(conn->config, request, path_length, &early)) {
        conn_respond_api(conn, request, &early);
        free(early.body);
        return true;
    }
    struct evbuffer *input = bufferevent_get_input(conn->bev);
    size_t total = head_length + (size_t)body_length;
    if (evbuffer_get_length(input) < total)
        return false;
    /* The whole request in one piece; the head moves, so parse it again. */
    const char *data = (const char *)evbuffer_pullup(input, (ev_ssize_t)total);
    struct http_request full;
    if (data == NULL ||
        http_request_parse(data, head_length, conn->config->limits.request_head_max, &full) !=
            (int)head_length) {
        conn_drop(conn);
        return true;
    }
    http_target_split(full.target, full.target_length, &path_length, &query, &query_length);
    struct api_request api = {
        .http = &full,
        .path = full.target,
        .path_length = path_length,
        .query = query,
        .query_length = query_length,
        .body = body_length > 0 || http_request_header(&full, "Content-Length") != NULL
                    ? data + head_length
                    : NULL,
        .body_length = (size_t)body_length,
        .peer = conn_client_address(conn),
    };
    if (conn->server->cluster != NULL && conn->api_waiter == NULL)
        api.waiter = conn->api_waiter = cluster_waiter_new(conn);
    struct api_response response;
    api_handle(conn->worker, conn->config, &api, &response);
    if (response.status == 0) {
        /* Answered later (conn_api_answer); nothing more is read. */
        conn_stop_reading(conn);
        evbuffer_drain(input, total);
        return true;
    }
    conn_respond_api(conn, &full, &response);
    free(response.body);
    evbuffer_drain(input, total);
    return true;
}

void conn_api_answer(struct conn *conn, const struct api_response *response)
{
    if (conn->state != CONN_HTTP)
        return;
    char head[1024];
    int length = http_response_head(head, sizeof(head), response->status, response->content_type,
                                    (long long)response->body_length, true,
                                    response->extra_headers);
    struct evbuffer *output = bufferevent_get_output(conn->bev);
    if (length < 0 || evbuffer_add(output, head, (size_t)length) != 0 ||
        evbuffer_add(output, response->body, response->body_length) != 0) {
        conn_drop(conn);
        return;
    }
    log_debug(&conn->server->log, "api %s \"POST %s\" %d", CONN_PEER(conn), conn->path,
              response->status);
    conn->worker->stats.http_requests++;
    conn_finish(conn);
}

/* ------------------------------------------------------------ requests */

static bool conn_copy_path(struct conn *conn, const struct http_request *request,
                           size_t path_length)
{
    /* The target is not NUL-terminated: copy exactly its path part. */
    free(conn->path);
    conn->path = malloc(path_length + 1);
    if (conn->path == NULL)
        return false;
    memcpy(conn->path, request->target, path_length);
    conn->path[path_length] = '\0';
    return true;
}

/* Behind a trusted proxy the client is who the forwarding headers say;
 * logs then name both. */
static void conn_resolve_client(struct conn *conn, const struct http_request *request)
{
    /* proxy_client_address may copy a whole sockaddr_un from the peer,
     * more than conn->peer_address keeps. */
    struct sockaddr_storage peer = { 0 };
    memcpy(&peer, &conn->peer_address, sizeof(conn->peer_address));
    struct sockaddr_storage client;
    if (!proxy_client_address(request, (const struct sockaddr *)&peer, &conn->config->proxy,
                              &client) ||
        (client.ss_family != AF_INET && client.ss_family != AF_INET6))
        return;
    if (conn->client == NULL)
        conn->client = malloc(sizeof(*conn->client));
    if (conn->client == NULL)
        return;   /* counted and logged as the proxy: harmless */
    memcpy(conn->client, &client, client.ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                                              : sizeof(struct sockaddr_in6));
    conn_count_address(conn, &conn->client->sa);
}

/* The address the client is believed to have. */
static const struct sockaddr *conn_client_address(const struct conn *conn)
{
    return conn->client != NULL ? &conn->client->sa : &conn->peer_address.sa;
}

/* Returns false when the request is not complete yet (its body is still
 * arriving); the caller drains head_length bytes otherwise. */
static bool conn_handle_request(struct conn *conn, const struct http_request *request,
                                size_t head_length)
{
    size_t path_length;
    const char *query;
    size_t query_length;
    http_target_split(request->target, request->target_length, &path_length, &query,
                      &query_length);
    if (!conn_copy_path(conn, request, path_length)) {
        conn_drop(conn);
        return true;
    }
    conn_resolve_client(conn, request);
    if (conn_refuse_over_limits(conn, request, path_length))
        return true;
    if (api_is_endpoint(request->target, path_length))
        return conn_handle_api(conn, request, head_length, path_length, query, query_length);
    const struct route_config *route = NULL;
    char channel[CHANNEL_NAME_MAX + 1] = "";
    switch (route_match(conn->config, request->target, path_length, &route, channel,
                        sizeof(channel))) {
    case ROUTE_MATCHED:
        conn_upgrade(conn, request, route, channel, query, query_length);
        break;
    case ROUTE_BAD_CHANNEL:
        conn->route = route;
        conn_reject_counted(conn, request, 400, "invalid channel name", NULL,
                            STATS_REJECT_BAD_CHANNEL);
        break;
    case ROUTE_NOT_FOUND:
        if (http_request_has_token(request, "Upgrade", "websocket"))
            conn_reject(conn, request, 404, "no WebSocket route for this path", NULL);
        else
            conn_serve_file(conn, request, request->target, path_length);
        break;
    }
    evbuffer_drain(bufferevent_get_input(conn->bev), head_length);
    return true;
}

static void conn_read_http(struct conn *conn)
{
    struct evbuffer *input = bufferevent_get_input(conn->bev);
    size_t limit = conn->config->limits.request_head_max;
    size_t available = evbuffer_get_length(input);
    size_t length = available < limit ? available : limit;
    const char *head = (const char *)evbuffer_pullup(input, (ev_ssize_t)length);
    if (head == NULL && length > 0) {
        conn_drop(conn);
        return;
    }
    struct http_request request;
    int parsed = http_request_parse(head, length, limit, &request);
    if (parsed == HTTP_PARSE_NEED_MORE)
        return;
    if (parsed == HTTP_PARSE_TOO_LARGE) {
        conn_reject(conn, NULL, 431, "request head too large", NULL);
        return;
    }
    if (parsed < 0) {
        conn_reject(conn, NULL, 400, "malformed request", NULL);
        return;
    }
    /* The request points into the input buffer, which conn_handle_request
     * drains only once it is done with it. */
    conn_handle_request(conn, &request, (size_t)parsed);
}

/* ------------------------------------------------------------ frames */

static void conn_fail(struct conn *conn, unsigned code, const char *reason)
{
    log_info(&conn->server->log, "fail %s %s: %s, closing %u", CONN_PEER(conn), conn->path, reason,
             code);
    conn_write_close(conn, code, reason);
    conn_finish(conn);
}

/* The echo route answers with the same message, compressed like any
 * delivery when the connection negotiated it. */
static void conn_echo(struct conn *conn, const struct ws_event *event)
{
    const struct deflate_options *options = &conn->config->websocket.compression;
    uint8_t *compressed = NULL;
    size_t compressed_length = 0;
    if (!conn->deflate || event->length < options->min_size ||
        deflate_compressors_compress(conn->worker->compressors, options,
                                     conn->deflate->params.server_max_window_bits, event->data,
                                     event->length, &compressed,
                                     &compressed_length) != DEFLATE_OK) {
        conn_write_frame(conn, event->opcode, event->data, event->length);
        conn_check_queue(conn, event->length);
        return;
    }
    uint8_t header[WSFRAME_MAX_HEADER];
    size_t header_length =
        wsframe_header_build(header, true, WSFRAME_RSV1, event->opcode, compressed_length);
    conn_write_bytes(conn, header, header_length, compressed, compressed_length);
    free(compressed);
    conn_check_queue(conn, compressed_length);
}

/* A raw frame on a broadcast route becomes a message on the route's channel. */
static void conn_broadcast(struct conn *conn, const struct ws_event *event)
{
    const struct channel_rule *rule = config_channel_rule(conn->config, conn->channel);
    if (!pubsub_publish_allowed(rule, conn->identity, true)) {
        log_debug(&conn->server->log, "publish forbidden %s %s", CONN_PEER(conn), conn->channel);
        conn_fail(conn, WS_CLOSE_POLICY, "publish not allowed");
        return;
    }
    if (server_over_memory(conn->server, conn->config)) {
        conn->worker->stats.memory_refusals++;
        log_warn(&conn->server->log, "memory limit reached: closing %s %s 1013", CONN_PEER(conn),
                 conn->path);
        conn_fail(conn, WS_CLOSE_TRY_AGAIN_LATER, "memory limit reached");
        return;
    }
    struct message *message =
        message_new(event->opcode == WS_OP_TEXT ? MESSAGE_TEXT : MESSAGE_BINARY, conn->channel,
                    conn->user, event->data, event->length);
    /* In cluster mode a publish Redis cannot take is counted there and
     * lost; the connection stays. */
    if (message == NULL ||
        (server_publish(conn->worker, message, conn->route->echo_self ? NULL : &conn->subscriber,
                        NULL) < 0 &&
         conn->server->cluster == NULL)) {
        message_release(message);
        conn_fail(conn, WS_CLOSE_INTERNAL_ERROR, "out of memory");
        return;
    }
    message_release(message);
}

/* A message with RSV1 set is compressed: inflate it within
 * max_message_size, then check text as UTF-8. Returns false after failing
 * the connection. */
static bool conn_inflate(struct conn *conn, struct ws_event *event, uint8_t **buffer)
{
    size_t length = 0;
    int result = deflate_inflate(conn->deflate->inflater, event->data, event->length,
                                 conn->config->websocket.max_message_size, buffer, &length);
    if (result == DEFLATE_TOO_BIG) {
        conn_fail(conn, WS_CLOSE_TOO_BIG, "message too big");
        return false;
    }
    if (result != DEFLATE_OK) {
        conn_fail(conn, result == DEFLATE_NO_MEMORY ? WS_CLOSE_INTERNAL_ERROR : WS_CLOSE_INVALID_PAYLOAD,
                  result == DEFLATE_NO_MEMORY ? "out of memory" : "invalid compressed data");
        return false;
    }
    if (event->opcode == WS_OP_TEXT && !utf8_is_valid(*buffer, length)) {
        conn_fail(conn, WS_CLOSE_INVALID_PAYLOAD, "invalid UTF-8");
        return false;
    }
    event->data = *buffer;
    event->length = length;
    event->rsv = 0;
    return true;
}

static void conn_handle_message(struct conn *conn, const struct ws_event *received)
{
    struct ws_event inflated = *received;
    const struct ws_event *event = &inflated;
    uint8_t *buffer = NULL;
    if ((received->rsv & WSFRAME_RSV1) && !conn_inflate(conn, &inflated, &buffer)) {
        free(buffer);
        return;
    }
    conn->worker->stats.messages_received++;
    conn->worker->stats.bytes_received += event->length;
    switch (conn->route->mode) {
    case ROUTE_MODE_ECHO:
        conn_echo(conn, event);
        break;
    case ROUTE_MODE_BROADCAST:
        conn_broadcast(conn, event);
        break;
    case ROUTE_MODE_PUBSUB:
        if (event->opcode == WS_OP_TEXT)
            pubsub_handle_text(conn->pubsub, event->data, event->length);
        else
            pubsub_handle_binary(conn->pubsub);
        break;
    }
    free(buffer);
}

static void conn_handle_close(struct conn *conn, const struct ws_event *event)
{
    if (conn->state == CONN_CLOSING) {
        /* The peer answered our close: the handshake is complete. */
        conn_finish(conn);
        return;
    }
    /* Echo the peer's code; an empty close is answered with an empty one. */
    conn_write_close(conn, event->close_code, "");
    if (event->close_code == WS_CLOSE_NO_STATUS)
        conn->close_code = WS_CLOSE_NO_STATUS;
    conn_finish(conn);
}

/* Every data message and ping takes a token from the connection's bucket
 * (pings too: each one costs us a pong). Returns false after failing the
 * connection with 1008. */
static bool conn_within_rate(struct conn *conn)
{
    const struct limits_config *limits = &conn->config->limits;
    if (limits->messages_per_second == 0 ||
        ratelimit_take(&conn->rate, limits->messages_per_second, limits->burst, server_now()))
        return true;
    conn->worker->stats.rate_limited++;
    log_warn(&conn->server->log, "rate limit %s %s: over %u messages per second", CONN_PEER(conn),
             conn->path, limits->messages_per_second);
    conn_fail(conn, WS_CLOSE_POLICY, "message rate exceeded");
    return false;
}

static void conn_handle_event(struct conn *conn, const struct ws_event *event)
{
    switch (event->type) {
    case WS_EVENT_MESSAGE:
        if (conn->state == CONN_OPEN && conn_within_rate(conn))
            conn_handle_message(conn, event);
        break;
    case WS_EVENT_PING:
        if (conn->state == CONN_OPEN && conn_within_rate(conn)) {
            conn_write_frame(conn, WS_OP_PONG, event->data, event->length);
            conn_check_queue(conn, event->length);
        }
        break;
    case WS_EVENT_PONG:
    case WS_EVENT_NONE:
        break;
    case WS_EVENT_CLOSE:
        conn_handle_close(conn, event);
        break;
    case WS_EVENT_ERROR:
        conn_fail(conn, event->close_code, event->reason);
        break;
    }
}

static struct conn_reader *conn_reader_get(struct worker *worker)
{
    if (worker->reader == NULL)
        worker->reader = calloc(1, sizeof(*worker->reader));
    return worker->reader;
}

static void conn_reader_free(struct worker *worker)
{
    if (worker->reader == NULL)
        return;
    if (worker->reader->spare != NULL) {
        ws_decoder_release(worker->reader->spare);
        free(worker->reader->spare);
    }
    free(worker->reader);
    worker->reader = NULL;
}

/* The decoder for this read: the connection's own when it holds part of a
 * frame, else the loop's spare, started afresh. NULL when out of memory. */
static struct ws_decoder *conn_decoder_take(struct conn *conn, struct conn_reader *reader)
{
    if (conn->decoder != NULL) {
        struct ws_decoder *own = conn->decoder;
        conn->decoder = NULL;
        return own;
    }
    struct ws_decoder_options options = {
        .max_message_size = conn->config->websocket.max_message_size,
        .allowed_rsv = conn->deflate ? WSFRAME_RSV1 : 0,
        .require_mask = true,
    };
    struct ws_decoder *decoder = reader->spare;
    if (decoder != NULL) {
        reader->spare = NULL;
        ws_decoder_reuse(decoder, &options);
        return decoder;
    }
    decoder = malloc(sizeof(*decoder));
    if (decoder != NULL)
        ws_decoder_init(decoder, &options);
    return decoder;
}

/* After a read: a decoder holding part of a frame stays with the
 * connection; an idle one (or one nobody reads for any more) goes back. */
static void conn_decoder_put(struct conn *conn, struct conn_reader *reader,
                             struct ws_decoder *decoder)
{
    bool reading = conn->state == CONN_OPEN || conn->state == CONN_CLOSING;
    if (reading && !ws_decoder_idle(decoder)) {
        conn->decoder = decoder;
    } else if (reader->spare == NULL) {
        reader->spare = decoder;
    } else {
        ws_decoder_release(decoder);
        free(decoder);
    }
}

/* Decodes bytes received on an open WebSocket and acts on every event,
 * until the bytes are used up or the connection stops reading. */
static void conn_read_frames(struct conn *conn, const uint8_t *data, size_t length)
{
    struct conn_reader *reader = conn_reader_get(conn->worker);
    struct ws_decoder *decoder = reader != NULL ? conn_decoder_take(conn, reader) : NULL;
    if (decoder == NULL) {
        log_error(&conn->server->log, "out of memory reading from %s", CONN_PEER(conn));
        conn_drop(conn);
        return;
    }
    uint64_t frames = ws_decoder_frames(decoder);
    size_t at = 0;
    while (at < length && (conn->state == CONN_OPEN || conn->state == CONN_CLOSING)) {
        struct ws_event event;
        size_t used = ws_decoder_feed(decoder, data + at, length - at, &event);
        at += used;
        conn_handle_event(conn, &event);
        if (used == 0 && event.type == WS_EVENT_NONE)
            break;
    }
    if (ws_decoder_frames(decoder) != frames)
        conn->last_frame_at = conn_now();
    conn_decoder_put(conn, reader, decoder);
}

/* Bytes a connection received, in whatever state it is. */
static void conn_take_bytes(struct conn *conn, const uint8_t *data, size_t length)
{
    if (conn->state == CONN_OPEN || conn->state == CONN_CLOSING)
        conn_read_frames(conn, data, length);
    /* CONN_LINGER discards input until EOF; nothing else reads. */
}

/* A plain connection that has just been upgraded drops its bufferevent
 * and reads with its own event; what the bufferevent read past the
 * request head are frames already. */
static void conn_leave_bufferevent(struct conn *conn)
{
    struct evbuffer *input = bufferevent_get_input(conn->bev);
    size_t left = evbuffer_get_length(input);
    if (left > 0) {
        const uint8_t *bytes = evbuffer_pullup(input, -1);
        if (bytes == NULL) {
            conn_drop(conn);
            return;
        }
        conn_take_bytes(conn, bytes, left);
    }
    if (conn->state == CONN_DEAD)
        return;
    /* Safe inside the bufferevent's own callback: libevent frees it once
     * the callback returns. */
    bufferevent_free(conn->bev);
    conn->bev = NULL;
    event_assign(&conn->read_event, conn->worker->base, conn->fd, EV_READ | EV_PERSIST,
                 conn_readable_cb, conn);
    if (conn->state != CONN_FLUSHING && conn_start_reading(conn) != 0)
        conn_drop(conn);
}

/* Reads once per readiness, as much as the shared buffer holds: the loop
 * comes back while there is more, so no connection starves the others. */
static void conn_readable_cb(evutil_socket_t fd, short events, void *arg)
{
    (void)events;
    struct conn *conn = arg;
    struct conn_reader *reader = conn_reader_get(conn->worker);
    if (reader == NULL) {
        log_error(&conn->server->log, "out of memory reading from %s", CONN_PEER(conn));
        conn_drop(conn);
        return;
    }
    ssize_t got = recv(fd, reader->buffer, sizeof(reader->buffer), 0);
    if (got > 0) {
        conn_take_bytes(conn, reader->buffer, (size_t)got);
        conn_pause_if_backlogged(conn);
        return;
    }
    if (got < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        log_debug(&conn->server->log, "socket error %s: %s", CONN_PEER(conn), strerror(errno));
    }
    conn_drop(conn);
}

/* ------------------------------------------------------------ callbacks */

/* Frames read by the bufferevent (TLS connections). */
static void conn_read_bufferevent(struct conn *conn)
{
    struct evbuffer *input = bufferevent_get_input(conn->bev);
    while (conn->state == CONN_OPEN || conn->state == CONN_CLOSING) {
        struct evbuffer_iovec chunk;
        if (evbuffer_peek(input, -1, NULL, &chunk, 1) < 1 || chunk.iov_len == 0)
            break;
        conn_read_frames(conn, chunk.iov_base, chunk.iov_len);
        evbuffer_drain(input, chunk.iov_len);
    }
}

/* ------------------------------------------------------------ callbacks */

#define CONN_RESUME_CHECK_US 1000

static void conn_resume_cb(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    struct conn *conn = arg;
    struct timeval delay = { 0, CONN_RESUME_CHECK_US };
    if (conn->state != CONN_OPEN)
        return;
    if (worker_backlogged(conn->server)) {
        evtimer_add(conn->resume, &delay);
        return;
    }
    if (conn_start_reading(conn) != 0) {
        conn_drop(conn);
        return;
    }
    if (conn->bev != NULL)
        conn_read_cb(conn->bev, conn);   /* what was read before the pause */
}

/* With several workers, a publisher whose messages some worker cannot
 * deliver as fast stops reading until that worker has caught up. */
static void conn_pause_if_backlogged(struct conn *conn)
{
    if (conn->state != CONN_OPEN || hub_is_direct(conn->server->hub) ||
        !worker_backlogged(conn->server))
        return;
    if (conn->resume == NULL)
        conn->resume = evtimer_new(conn->worker->base, conn_resume_cb, conn);
    struct timeval delay = { 0, CONN_RESUME_CHECK_US };
    if (conn->resume == NULL || evtimer_add(conn->resume, &delay) != 0)
        return;
    conn_stop_reading(conn);
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    struct conn *conn = arg;
    switch (conn->state) {
    case CONN_HTTP:
        conn_read_http(conn);
        break;
    case CONN_OPEN:
    case CONN_CLOSING:
        break;
    case CONN_LINGER:
        evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
        return;
    case CONN_FLUSHING:
    case CONN_DEAD:
        return;
    }
    /* Bytes after the request head may already be frames. */
    if (conn->direct && conn->state != CONN_HTTP)
        conn_leave_bufferevent(conn);
    else if (conn->state == CONN_OPEN || conn->state == CONN_CLOSING)
        conn_read_bufferevent(conn);
    conn_pause_if_backlogged(conn);
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
    struct conn *conn = arg;
    if (conn->state == CONN_FLUSHING && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        conn_linger(conn);
}

static void conn_event_cb(struct bufferevent *bev, short events, void *arg)
{
    (void)bev;
    struct conn *conn = arg;
    if (events & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        if (events & BEV_EVENT_ERROR)
            log_debug(&conn->server->log, "socket error %s: %s", CONN_PEER(conn),
                      evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        conn_drop(conn);
    }
}

static void conn_keepalive_tick(struct conn *conn)
{
    const struct websocket_config *ws = &conn->config->websocket;
    struct timespec now = conn_now();
    struct timespec deadline = conn_time_add(conn->last_frame_at, ws->ping_timeout);
    if (conn_time_reached(now, deadline)) {
        log_info(&conn->server->log, "ping timeout %s %s: nothing received for %u s",
                 CONN_PEER(conn), conn->path, ws->ping_timeout);
        conn_send_close_now(conn, WS_CLOSE_GOING_AWAY, "ping timeout");
        conn_drop(conn);
        return;
    }
    if (conn_time_reached(now, conn->next_ping_at)) {
        conn_write_frame(conn, WS_OP_PING, NULL, 0);
        conn->next_ping_at = conn_time_add(now, ws->ping_interval);
    }
    bool ping_first = !conn_time_reached(conn->next_ping_at, deadline);
    conn_arm_timer_at(conn, ping_first ? conn->next_ping_at : deadline);
}

static void conn_timer_fire(struct conn *conn)
{
    switch (conn->state) {
    case CONN_HTTP:
        log_info(&conn->server->log, "handshake timeout %s", CONN_PEER(conn));
        conn->worker->stats.rejected[STATS_REJECT_TIMEOUT]++;
        if (conn->tls && !SSL_is_init_finished(bufferevent_openssl_get_ssl(conn->bev))) {
            conn_drop(conn);   /* no TLS session to carry a 408 */
            break;
        }
        conn_respond(conn, 408, NULL, "408 Request Timeout\n");
        break;
    case CONN_OPEN:
        conn_keepalive_tick(conn);
        break;
    case CONN_CLOSING:
        log_info(&conn->server->log, "close timeout %s %s", CONN_PEER(conn), conn->path);
        conn_drop(conn);
        break;
    case CONN_FLUSHING:
    case CONN_LINGER:
        conn_drop(conn);
        break;
    case CONN_DEAD:
        break;
    }
}

/* ------------------------------------------------------------ closing */

void conn_close(struct conn *conn, unsigned code, const char *reason)
{
    if (conn->state == CONN_OPEN) {
        conn_write_close(conn, code, reason);
        conn->state = CONN_CLOSING;
        conn_disarm_timer(conn);
        conn_arm_timer_seconds(conn, conn->config->websocket.close_timeout);
    } else if (conn->state == CONN_HTTP) {
        conn_drop(conn);
    }
}

void conn_close_all(struct worker *worker, unsigned code, const char *reason)
{
    for (struct conn *conn = worker->connections; conn != NULL; conn = conn->next)
        conn_close(conn, code, reason);
}

size_t conn_disconnect_user(struct worker *worker, const char *user, unsigned code,
                            const char *reason)
{
    size_t count = 0;
    for (struct conn *conn = worker->connections; conn != NULL; conn = conn->next) {
        if (conn->state == CONN_OPEN && conn->user != NULL && strcmp(conn->user, user) == 0) {
            conn_close(conn, code, reason);
            count++;
        }
    }
    return count;
}

/* What the libraries allocate for a connection, measured as heap growth
 * per idle connection less what conn_memory_usage counts (glibc, libevent
 * 2.1.12, OpenSSL 3.0), since none of them reports it. Every connection:
 * libevent's bookkeeping for its socket and malloc's overhead on the
 * connection's blocks. While it has a bufferevent (HTTP, TLS): that, its
 * two buffers and their events. A TLS session: what OpenSSL adds. */
#define CONN_LIBRARY_BYTES 170
#define CONN_BUFFEREVENT_BYTES 860
#define CONN_TLS_BYTES 14000

/* What a connection holds of input not yet acted on: the bufferevent's
 * input, or its own decoder while a frame is incomplete. */
static size_t conn_read_bytes(const struct conn *conn)
{
    size_t bytes = conn->bev != NULL ? evbuffer_get_length(bufferevent_get_input(conn->bev)) : 0;
    if (conn->decoder != NULL)
        bytes += sizeof(*conn->decoder) + conn->decoder->message_capacity;
    return bytes;
}

static size_t conn_deflate_bytes(const struct conn *conn)
{
    return conn->deflate != NULL
               ? sizeof(*conn->deflate) + deflate_inflater_footprint(conn->deflate->inflater)
               : 0;
}

static size_t conn_identity_bytes(const struct conn *conn)
{
    return (conn->identity != NULL ? sizeof(*conn->identity) : 0) +
           (conn->client != NULL ? sizeof(*conn->client) : 0);
}

static size_t conn_string_bytes(const char *text)
{
    return text != NULL ? strlen(text) + 1 : 0;
}

void conn_memory_usage(const struct worker *worker, struct conn_memory *usage)
{
    memset(usage, 0, sizeof(*usage));
    for (const struct conn *conn = worker->connections; conn != NULL; conn = conn->next) {
        usage->connections++;
        usage->connection_bytes += sizeof(*conn) + CONN_LIBRARY_BYTES +
                                   (conn->bev != NULL ? CONN_BUFFEREVENT_BYTES : 0) +
                                   frame_queue_footprint(&conn->out) +
                                   (conn->tls ? CONN_TLS_BYTES : 0) +
                                   conn_read_bytes(conn) +
                                   conn_deflate_bytes(conn) + conn_identity_bytes(conn) +
                                   conn_string_bytes(conn->path) + conn_string_bytes(conn->channel) +
                                   conn_string_bytes(conn->user);
        usage->queued_bytes += conn_queued(conn);
    }
}

void conn_drop_all(struct worker *worker)
{
    for (struct conn *conn = worker->connections; conn != NULL; conn = conn->next)
        conn_drop(conn);
}
