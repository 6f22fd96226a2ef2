/* conn — one client connection: the HTTP request head, the upgrade, the
 * WebSocket read path, keep-alive and close handshake, and a bounded output
 * queue. A connection owns its bufferevent, its decoder state and its timer.
 *
 * Lifecycle: conn_accept creates it; it is never freed from inside one of
 * its own callbacks: a finished connection is marked dead, unlinked from the
 * hub and queued on its worker's reap list, and conn_reap frees it from the
 * loop later. */
#ifndef WSBROKER_CONN_H
#define WSBROKER_CONN_H

#include <stddef.h>
#include <stdint.h>

#include <event2/util.h>
#include <sys/socket.h>
#include <time.h>

struct worker;
struct conn;
struct tls_context;

/* Takes ownership of fd (an accepted socket). tls: the listener's TLS
 * context, or NULL for a plain listener. accepted_at: when accept()
 * returned it on CLOCK_MONOTONIC, or NULL for now; handshake_timeout
 * counts from then. */
void conn_accept(struct worker *worker, evutil_socket_t fd, const struct sockaddr *address,
                 int address_length, struct tls_context *tls, const struct timespec *accepted_at);

/* Starts a server-initiated close: a WebSocket gets a close frame with code
 * and reason and close_timeout to answer; anything else is dropped. */
void conn_close(struct conn *conn, unsigned code, const char *reason);

struct api_response;
/* Answers the API request the connection waits on (cluster mode: a
 * publish answered once Redis has), and closes it as any API request. */
void conn_api_answer(struct conn *conn, const struct api_response *response);

/* Drops every connection on the reap list. */
void conn_reap(struct worker *worker);

/* Closes every live connection of worker with code (1001: shutdown). */
void conn_close_all(struct worker *worker, unsigned code, const char *reason);

/* Starts closing every open WebSocket of user on worker with code and
 * reason. Returns how many. */
size_t conn_disconnect_user(struct worker *worker, const char *user, unsigned code,
                            const char *reason);

/* Memory held by connections, for /metrics. */
struct conn_memory {
    size_t connections;          /* live connections, closing ones included */
    uint64_t connection_bytes;   /* their state, read buffers, partial messages
                                    and compression state */
    uint64_t queued_bytes;       /* bytes waiting to be written to clients
                                    (frames shared between receivers count
                                    once per receiver) */
};
void conn_memory_usage(const struct worker *worker, struct conn_memory *usage);

/* Drops every live connection of worker at once. */
void conn_drop_all(struct worker *worker);

/* Frees what the worker's connections share for reading, writing and
 * their deadlines (at cleanup, once every connection is freed). */
void conn_flush_free(struct worker *worker);

#endif
